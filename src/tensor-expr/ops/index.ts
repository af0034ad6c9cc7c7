import './elementwise.js';
import './nn.js';
import './linalg.js';
import './reduce.js';
import './transform.js';
import './layout.js';
import './winograd.js';
import './quantized.js';
