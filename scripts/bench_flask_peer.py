# A peer for `npm run bench:serve`: the PyTorch deployment tutorial's Flask app (Flask's threaded server, an eager
# PyTorch model under torch.no_grad()), speaking the same KServe v2 binary-data request and response as the others.
# .venv/bin/python scripts/bench_flask_peer.py mobilenet_v2|bert PORT   (or --check: exit 0 when Flask imports)
import json
import sys

try:
    from flask import Flask, Response, request
except ImportError:
    # No Flask wheel on this machine's disk: Debian's python3-flask, searched after the venv's own packages so that
    # torch and numpy stay the venv's.
    sys.path.append("/usr/lib/python3/dist-packages")
    from flask import Flask, Response, request

if sys.argv[1] == "--check":
    sys.exit(0)

import numpy as np
import torch

torch.library.register_fake = lambda *a, **k: (lambda f: f)  # before torchvision (see notes/machine-facts.md)

name, port = sys.argv[1], int(sys.argv[2])
torch.manual_seed(0)
if name == "mobilenet_v2":
    import torchvision

    model = torchvision.models.mobilenet_v2().eval()
else:
    from transformers import BertConfig, BertModel

    cfg = BertConfig(hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                     intermediate_size=1024, vocab_size=1000, max_position_embeddings=128)
    cfg._attn_implementation = "eager"
    bert = BertModel(cfg, add_pooling_layer=False).eval()
    model = lambda input_ids, attention_mask: bert(input_ids=input_ids, attention_mask=attention_mask,
                                                   return_dict=True).last_hidden_state

DTYPES = {"FP32": np.float32, "INT64": np.int64}
app = Flask(__name__)


@app.get("/v2/health/ready")
def ready():
    return {"ready": True}


@app.post("/v2/models/<model_name>/infer")
def infer(model_name):
    body = request.get_data()
    n = int(request.headers["Inference-Header-Content-Length"])
    header = json.loads(body[:n])
    at, feeds = n, []
    for i in header["inputs"]:
        size = i["parameters"]["binary_data_size"]
        feeds.append(torch.from_numpy(np.frombuffer(body[at:at + size], DTYPES[i["datatype"]]).reshape(i["shape"]).copy()))
        at += size
    with torch.no_grad():
        out = model(*feeds).numpy()
    blob = out.astype(np.float32).tobytes()
    head = json.dumps({"model_name": model_name, "outputs": [
        {"name": "output", "datatype": "FP32", "shape": list(out.shape), "parameters": {"binary_data_size": len(blob)}}]}).encode()
    return Response(head + blob, mimetype="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(len(head))})


if __name__ == "__main__":
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app.run(host="127.0.0.1", port=port, threaded=True)
