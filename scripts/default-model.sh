#!/usr/bin/env bash
# Builds the default model file target/models/default.bertling with the given bertling binary.
# Until the English default model lands (issue 8) this is the tiny DistilBERT test fixture:
# real bert-base-uncased WordPiece vocabulary, random weights. Its answers are not English.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-target/release/bertling}"
mkdir -p target/models
"$bin" compile models/fixtures/distilbert -o target/models/default.bertling
