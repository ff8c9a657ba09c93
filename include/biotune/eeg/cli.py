"""``biotune eeg ...``: the EEG family's steps from a shell (same library code as the DAGs).

    biotune eeg synth --out DIR [--participants 12] [--seconds 120] [--format mind_monitor|plain|mixed]
    biotune eeg primary --source DIR --labels FILE.csv [--window-seconds 10] --out FILE.parquet
    biotune eeg pretrain --primary FILE.parquet --d-model 64 --layers 2 --mask-ratio 0.5 --style mae [--out DIR]
    biotune eeg checkpoints [--root DIR]
    biotune eeg finetune --primary FILE.parquet --out DIR (--checkpoint DIR | --d-model 64 --layers 2
                         --mask-ratio 0.5 --style mae [--checkpoints-root DIR] | --from-scratch)
    (torchrun: python -m torch.distributed.run --nproc_per_node 2 -m biotune.eeg.finetune <same options>)
"""

from __future__ import annotations

import json
import os
import sys


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True, default=str))


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr)


def _channels(text: str) -> tuple[str, ...]:
    return tuple(c.strip() for c in text.split(",") if c.strip())


def cmd_synth(args) -> int:
    from biotune.eeg.synth import write_dataset

    out = write_dataset(args.out, participants=args.participants, seconds=args.seconds, seed=args.seed,
                        fmt=args.format, effect=args.effect, disconnect_every=args.disconnect_every)
    _print_json({"source": out["source"], "labels": out["labels"], "participants": len(out["files"])})
    return 0


def cmd_primary(args) -> int:
    from biotune.eeg.primary import build_primary

    report = build_primary(args.source, args.labels, args.out, window_seconds=args.window_seconds,
                           sub_window_seconds=args.sub_window_seconds, channels=_channels(args.channels),
                           expected_fs=args.sampling_rate, on_nan=args.on_nan, quarantine=args.quarantine,
                           progress=None if args.quiet else _progress)
    if not args.sessions:
        report.pop("sessions")
    _print_json(report)
    return 0


def cmd_pretrain(args) -> int:
    from biotune.eeg.pretrain import pretrain

    backbone = _backbone_options(args)
    summary = pretrain(args.primary, args.out, d_model=args.d_model, n_layers=args.layers, mask_ratio=args.mask_ratio,
                       style=args.style, backbone=backbone, epochs=args.epochs, batch_size=args.batch_size,
                       lr=args.lr, seed=args.seed, progress=_progress)
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 reports
        _print_json(summary)
    return 0


def cmd_checkpoints(args) -> int:
    from biotune.eeg.pretrain import default_root, list_checkpoints

    rows = list_checkpoints(args.root)
    if args.json:
        _print_json(rows)
    elif not rows:
        print(f"no EEG checkpoints under {args.root or default_root()} (make one with `biotune eeg pretrain`)")
    for row in [] if args.json else rows:
        print(f"{row['name']:40} loss={row['final_loss']:.4f}  {row['path']}")
    return 0


def _backbone_options(args) -> dict:
    return {k: v for k, v in {"d_state": args.d_state, "headdim": args.headdim, "expand": args.expand,
                              "chunk_size": args.chunk_size}.items() if v is not None}


def cmd_finetune(args) -> int:
    from biotune.eeg.finetune import finetune

    pretrain_config = None
    if args.checkpoint is None and not args.from_scratch:
        pretrain_config = {"d_model": args.d_model, "n_layers": args.layers, "mask_ratio": args.mask_ratio,
                           "style": args.style, "root": args.checkpoints_root, **_backbone_options(args)}
    scratch = {"d_model": args.d_model, "n_layers": args.layers, **_backbone_options(args)} if args.from_scratch else None
    result = finetune(args.primary, args.out, checkpoint=args.checkpoint, pretrain_config=pretrain_config,
                      backbone_config=scratch, freeze_backbone=not args.train_backbone, epochs=args.epochs,
                      batch_size=args.batch_size, lr=args.lr, dropout=args.dropout, seed=args.seed,
                      val_fraction=args.val_fraction, test_fraction=args.test_fraction, pool=args.pool,
                      progress=None if args.quiet else _progress)
    if os.environ.get("RANK", "0") == "0":
        result.pop("history")
        _print_json(result)
    return 0


def _add_backbone_options(p) -> None:
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--d-state", type=int, default=None, help="Mamba-2 state size (default 128)")
    p.add_argument("--headdim", type=int, default=None, help="Mamba-2 head dimension (default 64)")
    p.add_argument("--expand", type=int, default=None)
    p.add_argument("--chunk-size", type=int, default=None)


def add_commands(subparsers) -> None:
    """Add the ``eeg`` command group to the ``biotune`` parser."""
    eeg = subparsers.add_parser("eeg", help="Muse EEG: generator, primary dataset, Mamba-2 pretraining and fine-tuning")
    sub = eeg.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("synth", help="Mind Monitor / muse-lsl CSVs with a planted remission signal, and labels.csv")
    p.add_argument("--out", required=True)
    p.add_argument("--participants", type=int, default=12)
    p.add_argument("--seconds", type=float, default=120.0)
    p.add_argument("--format", default="mind_monitor", choices=["mind_monitor", "plain", "mixed"])
    p.add_argument("--effect", type=float, default=1.0, help="planted effect size (0 = no group difference)")
    p.add_argument("--disconnect-every", type=int, default=0, help="every k-th recording has one disconnection")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("primary", help="recordings + labels -> the primary dataset parquet (seed: process-primary)")
    p.add_argument("--source", required=True, help="DIR/<participant>/*.csv or DIR/<participant>.csv")
    p.add_argument("--labels", required=True, help="CSV with Participant,Remission")
    p.add_argument("--out", required=True, help="output parquet file, or a directory for the standard name")
    p.add_argument("--window-seconds", type=float, default=10.0)
    p.add_argument("--sub-window-seconds", type=float, default=0.25,
                   help="token length: 0.25 s (64 samples) makes masked reconstruction learnable")
    p.add_argument("--channels", default="TP9,AF7,AF8,TP10")
    p.add_argument("--sampling-rate", type=float, default=256.0, help="the rate the timestamps must confirm")
    p.add_argument("--on-nan", default="error", choices=["error", "drop"],
                   help="long runs of empty cells: fail (default) or drop the windows that overlap them")
    p.add_argument("--quarantine", action="store_true", help="move a bad recording to the lake's quarantine/")
    p.add_argument("--sessions", action="store_true", help="include the per-session report")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_primary)

    p = sub.add_parser("pretrain", help="masked pretraining of the Mamba-2 backbone (runs under torchrun too)")
    p.add_argument("--primary", required=True, help="primary dataset parquet")
    p.add_argument("--out", default=None, help="checkpoint root (default: <BIOTUNE_PRETRAINED>/eeg)")
    p.add_argument("--mask-ratio", type=float, default=0.5)
    p.add_argument("--style", default="mae", choices=["mae", "bert"])
    _add_backbone_options(p)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("checkpoints", help="list the pretrained EEG checkpoints")
    p.add_argument("--root", default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_checkpoints)

    p = sub.add_parser("finetune", help="supervised fine-tuning on the primary dataset (runs under torchrun too)")
    p.add_argument("--primary", required=True, help="primary dataset parquet")
    p.add_argument("--out", required=True, help="directory for the trained model")
    p.add_argument("--checkpoint", default=None, help="a checkpoint directory (else discovered from the options)")
    p.add_argument("--checkpoints-root", default=None, help="where to look for checkpoints")
    p.add_argument("--from-scratch", action="store_true", help="no pretraining: a randomly initialised backbone")
    p.add_argument("--mask-ratio", type=float, default=0.5)
    p.add_argument("--style", default="mae", choices=["mae", "bert"])
    _add_backbone_options(p)
    p.add_argument("--train-backbone", action="store_true", help="fine-tune the backbone too (default: frozen)")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--pool", default="mean_energy", choices=["mean_energy", "mean"],
                   help="head input: mean of the backbone outputs and the log energy the final RMSNorm removes "
                        "(default), or the mean alone (the seed's)")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_finetune)
