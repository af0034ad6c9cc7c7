import './elementwise.js';
import './nn.js';
import './linalg.js';
import './reduce.js';
import './transform.js';
import './layout.js';
import './attention.js';
import './recurrent.js';
