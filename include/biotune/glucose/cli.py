"""``biotune glucose ...``: the family's steps from a shell (same code the DAG runs)."""

from __future__ import annotations

import json
import sys


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True, default=str))


def cmd_check(args) -> int:
    from biotune.glucose.check import check_file

    report = check_file(args.file, model=args.model, max_tokens=args.max_tokens,
                        check_safety=not args.no_safety, check_pii=not args.no_pii)
    if args.json:
        _print_json(report.as_dict())
        return 0 if report.ok else 1
    d = report.as_dict()
    t = d["tokens"]
    print(f"{report.path}: {report.n_examples} examples, {report.n_errors} error(s), "
          f"{len(report.warnings)} warning(s)  [{report.model}, limit {report.token_limit:,} tokens, "
          f"{report.encoding}; {report.seconds:.2f} s]")
    if t.get("n"):
        print(f"tokens per example: min {t['min']:,} / mean {t['mean']:,} / max {t['max']:,}; "
              f"over the limit: {t['n_over_limit']}; est. billing tokens ({t['default_epochs']} epochs): "
              f"{t['billing_tokens_estimate']:,}")
    for issue in report.issues:
        print(f"{issue.severity:7} {issue}")
    hidden = sum(report.counts.values()) - len(report.issues)
    if hidden:
        print(f"... and {hidden} more (counts by code: {dict(report.counts)})")
    print("OK" if report.ok else "FAILED")
    return 0 if report.ok else 1


def cmd_synth(args) -> int:
    from biotune.glucose.synth import write_patients

    info = write_patients(args.out, n_patients=args.patients, days=args.days, seed=args.seed)
    info.pop("planted")
    _print_json(info)
    return 0


def cmd_dataset(args) -> int:
    from biotune.glucose.dataset import build_dataset

    _print_json(build_dataset(args.source, args.out, val_fraction=args.val_fraction,
                              test_fraction=args.test_fraction, seed=args.seed,
                              progress=lambda m: print(m, file=sys.stderr)))
    return 0


def add_commands(subparsers) -> None:
    from biotune.glucose.tokens import DEFAULT_MODEL

    glucose = subparsers.add_parser("glucose", help="glucose coaching LM: data, checks, training")
    sub = glucose.add_subparsers(dest="glucose_command", required=True)

    p = sub.add_parser("check", help="check a chat JSONL fine-tuning file (every problem with its line)")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"target model for the token limit (default {DEFAULT_MODEL})")
    p.add_argument("--max-tokens", type=int, default=None, help="token limit per example (overrides the model's)")
    p.add_argument("--no-safety", action="store_true", help="skip the clinical safety rule")
    p.add_argument("--no-pii", action="store_true", help="skip the personal-data scan")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("synth", help="write synthetic CGM records with planted patterns")
    p.add_argument("--out", required=True)
    p.add_argument("--patients", type=int, default=20)
    p.add_argument("--days", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("dataset", help="CGM records -> train/validation chat JSONL with reviewed answers")
    p.add_argument("--source", required=True, help="folder with patients.csv and <patient_id>/cgm.csv")
    p.add_argument("--out", required=True)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--test-fraction", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_dataset)
