"""``biotune activity ...``: the activity family's steps from a shell (same code as the DAG).

The lead's ``biotune.cli`` calls :func:`add_commands` with its top-level sub-parsers. Handlers
return the exit code; typed errors propagate (the main CLI prints what/where/fix, exit 2).
"""

from __future__ import annotations

import json
import sys


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True, default=str))


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr)


def cmd_diagnose(args) -> int:
    """Exit 0 when no check fails (warnings allowed), 1 when any fails."""
    from biotune.activity.diagnose import diagnose, write_report

    report = diagnose(args.data, args.config, args.pipeline)
    if args.out:
        write_report(report, args.out)
    if args.json:
        _print_json(report.to_dict())
    else:
        print(report.to_text())
    return 0 if report.ok else 1


def cmd_synth(args) -> int:
    from biotune.activity.synth import write_demo

    paths = write_demo(args.out, seed=args.seed, source_persons=args.source_persons,
                       garmin_persons=args.garmin_persons, mismatches=not args.no_mismatches)
    _print_json(paths)
    return 0


def cmd_info(args) -> int:
    from biotune.activity.model import SEED_PARAMETERS, parameter_count

    n = parameter_count(args.size)
    print(f"1D-CNN-BiLSTM ({args.size}): {n:,} parameters (the seed reports ~499K; its layer list gives "
          f"{SEED_PARAMETERS:,})")
    return 0


def cmd_train(args) -> int:
    from biotune.activity.workflow import train_source_model

    result = train_source_model(args.source, args.config, args.out, size=args.size, epochs=args.epochs,
                                seed=args.seed, progress=_progress)
    _print_json(result)
    return 0


def cmd_shift(args) -> int:
    """Exit 0 on "no shift", 3 on "domain shift", 1 on "pipeline bug"."""
    from biotune.activity.workflow import shift_report

    report = shift_report(args.model, args.source, args.data, args.config, pipeline=args.pipeline)
    if args.json:
        _print_json(report.to_dict())
    else:
        print(f"verdict: {report.verdict}")
        for line in report.evidence:
            print(f"  - {line}")
    return {"no shift": 0, "domain shift": 3}.get(report.verdict, 1)


def cmd_transfer(args) -> int:
    from biotune.activity.workflow import transfer_model

    result = transfer_model(args.model, args.source, args.data, args.config, args.out, pipeline=args.pipeline,
                            trainable_last=args.trainable_last, epochs=args.epochs, seed=args.seed,
                            progress=_progress)
    _print_json(result)
    return 0


def add_commands(subparsers) -> None:
    """Add the ``activity`` command and its sub-commands to ``biotune``'s parser."""
    act = subparsers.add_parser("activity", help="wrist-IMU activity family: diagnose, shift, train, transfer")
    sub = act.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("diagnose", help="pipeline diagnostic: is the data processed as the model was trained?")
    p.add_argument("--data", required=True, help="folder of session CSVs (with its pipeline.json)")
    p.add_argument("--config", required=True, help="the model's training config.json (seed format)")
    p.add_argument("--pipeline", default=None, help="pipeline config (default: <data>/pipeline.json)")
    p.add_argument("--out", default=None, help="also write the report JSON here (and .txt beside it)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_diagnose)

    p = sub.add_parser("synth", help="generate source + Garmin sessions, config.json, planted mismatches")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--source-persons", type=int, default=8)
    p.add_argument("--garmin-persons", type=int, default=6)
    p.add_argument("--no-mismatches", action="store_true")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("info", help="parameter count of the CNN-BiLSTM")
    p.add_argument("--size", default="seed", choices=["seed", "small", "tiny"])
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("train", help="train the CNN-BiLSTM on source-domain sessions")
    p.add_argument("--source", required=True, help="folder of labelled source session CSVs")
    p.add_argument("--config", required=True, help="training config.json (its scaler is applied)")
    p.add_argument("--out", required=True, help="the .keras file to write")
    p.add_argument("--size", default="seed", choices=["seed", "small", "tiny"])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("shift", help="domain-shift check: pipeline bug / domain shift / no shift")
    p.add_argument("--model", required=True, help="the deployed .keras model")
    p.add_argument("--source", required=True, help="source-domain session CSVs (the reference)")
    p.add_argument("--data", required=True, help="new-domain session CSVs")
    p.add_argument("--config", required=True)
    p.add_argument("--pipeline", default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_shift)

    p = sub.add_parser("transfer", help="head-only transfer to the new domain (30/70 mix)")
    p.add_argument("--model", required=True)
    p.add_argument("--source", required=True)
    p.add_argument("--data", required=True, help="labelled new-domain session CSVs")
    p.add_argument("--config", required=True)
    p.add_argument("--pipeline", default=None)
    p.add_argument("--out", required=True, help="the tuned .keras file")
    p.add_argument("--trainable-last", type=int, default=4)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_transfer)
