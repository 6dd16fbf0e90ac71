"""CLI: python -m bertling_models {build-fixtures,build-base,regen,make-skeleton,build-dynamo-skeletons,check,build-default,assemble-default} ..."""
from __future__ import annotations

import argparse
import os
import sys
import warnings

from .architectures import ARCHS

DEFAULT_BASE_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "bertling", "base")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="bertling_models")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("build-fixtures", help="tiny fixtures + references into models/fixtures (needs torch)")
    p.add_argument("--arch", choices=ARCHS, action="append")
    p.add_argument("--out", default=None, help="fixtures dir (default models/fixtures)")
    p.add_argument("--retrain-tokenizers", action="store_true",
                   help="train tokenizers anew instead of reusing the committed tokenizer.json files")
    p = sub.add_parser("build-base", help="base-size seeded export (needs torch)")
    p.add_argument("--arch", choices=ARCHS, required=True)
    p.add_argument("--out", default=None, help=f"default {DEFAULT_BASE_CACHE}/<arch>")
    p = sub.add_parser("make-skeleton", help="strip a base export into models/skeletons/<arch>")
    p.add_argument("--arch", choices=ARCHS, required=True)
    p.add_argument("--src", default=None, help="base export dir (default the build-base cache)")
    p.add_argument("--out", default=None)
    p = sub.add_parser("build-dynamo-skeletons",
                       help="dev (torch, onnxscript): each fixture's model exported by the dynamo exporter, "
                            "as skeletons into models/skeletons/dynamo/<arch>")
    p.add_argument("--arch", choices=ARCHS, action="append")
    p = sub.add_parser("regen", help="refill a skeleton with seeded numpy weights (torch-free)")
    p.add_argument("--arch", choices=ARCHS, required=True)
    p.add_argument("--out", default=None, help=f"default {DEFAULT_BASE_CACHE}/<arch>-regen")
    p.add_argument("--skeleton", default=None)
    p = sub.add_parser("check", help="torch-free: load an export dir in onnxruntime and run it")
    p.add_argument("dir")
    p.add_argument("--text", default=None)
    p = sub.add_parser("build-default", help="dev (torch): a training checkpoint -> models/default-model/")
    p.add_argument("--run", default="target/default-train/run")
    p.add_argument("--text-dir", default="target/default-train/text")
    p.add_argument("--export", default="target/default-train/export")
    p.add_argument("--out", default=None, help="default models/default-model")
    p.add_argument("--ckpt", default="best.pt")
    p.add_argument("--eval-targets", type=int, default=6000)
    p = sub.add_parser("assemble-default", help="torch-free: PyPI encoder + models/default-model -> export dir")
    p.add_argument("--out", default="target/models/default-export")
    p.add_argument("--src", default=None, help="default models/default-model")
    p.add_argument("--check", action="store_true", help="also compare with the stored PyTorch references")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")

    if args.cmd == "build-fixtures":
        from . import fixtures

        fixtures.build_all(tuple(args.arch or ARCHS), args.out or fixtures.FIXTURES_DIR, args.retrain_tokenizers)
    elif args.cmd == "build-base":
        from . import base

        base.build_base(args.arch, args.out or os.path.join(DEFAULT_BASE_CACHE, args.arch))
    elif args.cmd == "make-skeleton":
        from . import skeleton

        skeleton.make_skeleton(args.src or os.path.join(DEFAULT_BASE_CACHE, args.arch),
                               args.out or skeleton.skeleton_dir(args.arch))
    elif args.cmd == "build-dynamo-skeletons":
        from . import skeleton

        for arch in args.arch or ARCHS:
            skeleton.build_dynamo_skeleton(arch)
    elif args.cmd == "regen":
        from . import skeleton

        skeleton.regen(args.skeleton or skeleton.skeleton_dir(args.arch),
                       args.out or os.path.join(DEFAULT_BASE_CACHE, args.arch + "-regen"))
    elif args.cmd == "check":
        from . import skeleton

        print(skeleton.check_runs(args.dir, args.text))
    elif args.cmd == "build-default":
        from . import default_model, default_model_build

        default_model_build.build(args.run, args.text_dir, args.export, args.out or default_model.DEFAULT_MODEL_DIR,
                                  args.ckpt, args.eval_targets)
    elif args.cmd == "assemble-default":
        from . import default_model

        src = args.src or default_model.DEFAULT_MODEL_DIR
        info = default_model.assemble(args.out, src)
        if args.check:
            info["references"] = default_model.check_references(args.out, src)
        print(info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
