#!/usr/bin/env bash
# Regenerates src/frontend/onnx/proto/onnx_pb.ts from onnx.proto (copied from the onnx wheel) with
# @bufbuild/protoc-gen-es. Needs Debian's protobuf-compiler. The output is committed so builds need no protoc.
set -euo pipefail
cd "$(dirname "$0")/.."
protoc --plugin=protoc-gen-es=node_modules/.bin/protoc-gen-es --es_out=src/frontend/onnx/proto \
  --es_opt=target=ts,import_extension=js -I scripts scripts/onnx.proto
