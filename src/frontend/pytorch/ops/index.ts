// Registers every ATen converter (one file per family, as in src/frontend/onnx/ops/).
import './elementwise.js';
import './linalg.js';
import './nn.js';
import './quantized.js';
import './reduce.js';
import './transform.js';
