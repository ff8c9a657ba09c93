"""The ``biotune`` command: the library's steps from a shell, same code as the DAGs."""

from __future__ import annotations

import argparse
import json
import sys

from biotune.errors import BiotuneError


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True, default=str))


def cmd_registry_list(args) -> int:
    from biotune import registry

    rows = registry.list_models()
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print("no registered models yet (run `make demo` or trigger a fine-tune DAG)")
        return 0
    from biotune import metrics as names

    print(f"{'model':30} {'champion':>9} {'challenger':>10} {'latest':>6}  headline metric (test)")
    keys = [names.test(k) for kind in names.HEADLINE.values() for k in kind]
    for row in rows:
        champ, chall = row["champion"], row["challenger"]
        metrics = (champ or chall or {}).get("metrics", {})
        headline = ", ".join(f"{k}={names.format_value(k, metrics[k])}" for k in keys if k in metrics)
        print(f"{row['name']:30} {('v' + champ['version']) if champ else '-':>9} "
              f"{('v' + chall['version']) if chall else '-':>10} {row['latest_version'] or '-':>6}  {headline}")
    return 0


def cmd_registry_rollback(args) -> int:
    from biotune import registry

    result = registry.rollback(args.name)
    print(f"{result['name']}: champion moved from v{result['from']} back to v{result['to']}")
    return 0


def cmd_registry_import(args) -> int:
    from biotune.mood.personal.safe_pickle import import_model

    _print_json(import_model(args.file, args.name))
    return 0


def cmd_spec_check(args) -> int:
    from biotune.family import get_family
    from biotune.specs import check_all, load_spec

    specs = [load_spec(p) for p in args.files] if args.files else check_all()
    for spec in specs:  # the family and its architecture must exist before anything trains
        get_family(spec.family).architecture(spec.architecture.kind)
    for spec in specs:
        print(f"ok  {spec.source}: {spec.name} ({spec.family}/{spec.task}, {spec.architecture.kind})")
    return 0


def cmd_validate(args) -> int:
    from biotune import validation

    if args.rows:
        frame = validation.read_frame(args.file, args.reader, args.rows)
        outcome = validation.run_suite(frame, args.suite, where=args.file, report_dir=args.report_dir)
    else:  # every row, streamed; nothing is moved by a check from the command line
        outcome = validation.validate_file(args.file, args.suite, args.reader, report_dir=args.report_dir,
                                           quarantine=False)
    _print_json(outcome.as_dict())
    return 0 if outcome.success else 1


def cmd_synth_nhanes(args) -> int:
    from biotune.synthetic.nhanes import write_nhanes

    paths = write_nhanes(args.out, participants=args.participants, seed=args.seed)
    for name, path in sorted(paths.items()):
        print(f"{name:10} {path}")
    return 0


def cmd_nhanes_cohort(args) -> int:
    from biotune.mood.cohort import build_cohort

    report = build_cohort(args.source, args.out, workers=args.workers, progress=lambda m: print(m, file=sys.stderr))
    from biotune.mood.pipeline import _report_dict

    _print_json(_report_dict(report))
    return 0


def cmd_pat_info(args) -> int:
    from biotune.mood.pat import pat_parameter_count

    print(f"PAT-{args.size}: {pat_parameter_count(args.size):,} encoder parameters")
    return 0


def cmd_pat_convert(args) -> int:
    from biotune.mood.pat_weights import convert_keras_weights

    convert_keras_weights(args.file, args.size, args.out)
    print(f"wrote {args.out}")
    return 0


def cmd_drift_psi(args) -> int:
    import pandas as pd

    from biotune.drift import psi, read_frame

    values = psi(read_frame(args.reference, "reference"), read_frame(args.current, "current"), method=args.method,
                 bins=args.bins)
    if args.json:
        _print_json({k: (None if pd.isna(v) else float(v)) for k, v in values.items()})
    else:
        for column, value in values.sort_values(ascending=False).items():
            flag = "  DRIFT" if value >= args.threshold else ""
            print(f"{column:40} {value:10.4f}{flag}")
    return 0


def cmd_drift_history(args) -> int:
    from biotune import monitoring
    from biotune.monitoring.store import decisions_by_day, shown_decision

    rows = monitoring.history(args.model, since=args.since, until=args.until)
    by_day = decisions_by_day(args.model, until=args.until)
    if args.json:
        _print_json({"history": rows, "decisions": [d for ds in by_day.values() for d in ds]})
        return 0
    if not rows:
        print("no drift measured yet (run drift_monitoring, or `make demo`)")
        return 0
    print(f"{'model':28} {'date':10} {'status':7} {'max PSI':>8} {'drifted':>7} {'conf':>6}  retrain?")
    for row in rows:
        day_decisions = by_day.get((row["model"], row["date"]), [])
        decision = shown_decision(day_decisions)
        verdict = "-" if decision is None else decision["decision"]
        if decision is not None and len(day_decisions) > 1:
            verdict += f" ({len(day_decisions)} decisions)"
        psi_max = "-" if row["max_psi"] is None else f"{row['max_psi']:.3f}"
        conf = "-" if row["mean_confidence"] is None else f"{row['mean_confidence']:.3f}"
        print(f"{row['model']:28} {row['date']:10} {row['status']:7} {psi_max:>8} {row['drifted_features']:>7} "
              f"{conf:>6}  {verdict}")
        shown = day_decisions if args.all_decisions else ([decision] if decision is not None and args.reasons else [])
        for d in shown:
            if args.all_decisions:
                print(f"{'':40}[{d['created_at'][:19]}] {d['decision']} (run {d.get('run_id') or '-'})")
            for reason in d["reasons"]:
                print(f"{'':40}{reason}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="biotune", description=__doc__)
    sub = parser.add_subparsers(dest="group", required=True)

    reg = sub.add_parser("registry", help="MLflow registry: list, rollback").add_subparsers(dest="cmd", required=True)
    p = reg.add_parser("list", help="registered models with champion and challenger")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_registry_list)
    p = reg.add_parser("rollback", help="move champion back to the version it replaced")
    p.add_argument("name")
    p.set_defaults(func=cmd_registry_rollback)
    p = reg.add_parser("import", help="register a user's XGBoost model (mood_ml pickle through an allow-list, "
                                      "or XGBoost JSON/UBJ) as a challenger")
    p.add_argument("file")
    p.add_argument("--name", required=True, help="registered name, e.g. mood_personal-depressive-xgb")
    p.set_defaults(func=cmd_registry_import)

    spec = sub.add_parser("spec", help="model specs in models/").add_subparsers(dest="cmd", required=True)
    p = spec.add_parser("check", help="load and check specs (all of models/ by default)")
    p.add_argument("files", nargs="*")
    p.set_defaults(func=cmd_spec_check)

    p = sub.add_parser("validate", help="run an expectations/ suite on a file")
    p.add_argument("file")
    p.add_argument("--suite", required=True)
    p.add_argument("--reader", default="parquet", choices=["parquet", "csv", "jsonl", "xpt"])
    p.add_argument("--rows", type=int, default=None, help="validate only the first N rows")
    p.add_argument("--report-dir", default=None)
    p.set_defaults(func=cmd_validate)

    synth = sub.add_parser("synth", help="generate data in the real file formats").add_subparsers(dest="cmd", required=True)
    p = synth.add_parser("nhanes", help="NHANES 2013-14 XPT files with planted signal")
    p.add_argument("--participants", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_synth_nhanes)

    nh = sub.add_parser("nhanes", help="NHANES readers").add_subparsers(dest="cmd", required=True)
    p = nh.add_parser("cohort", help="build the participant cohort parquet")
    p.add_argument("--source", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(func=cmd_nhanes_cohort)

    pat = sub.add_parser("pat", help="Pretrained Actigraphy Transformer").add_subparsers(dest="cmd", required=True)
    p = pat.add_parser("info", help="parameter count")
    p.add_argument("--size", default="S", choices=["S", "M", "L"])
    p.set_defaults(func=cmd_pat_info)
    p = pat.add_parser("convert-weights", help="released Keras .h5 weights to a PyTorch state dict")
    p.add_argument("file")
    p.add_argument("--size", required=True, choices=["S", "M", "L"])
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_pat_convert)

    _family_commands(sub)

    drift = sub.add_parser("drift", help="drift measures").add_subparsers(dest="cmd", required=True)
    p = drift.add_parser("psi", help="PSI per column between two parquet files")
    p.add_argument("--reference", required=True)
    p.add_argument("--current", required=True)
    p.add_argument("--method", default="quantile", choices=["quantile", "evidently"])
    p.add_argument("--bins", type=int, default=10)
    p.add_argument("--threshold", type=float, default=0.2)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_drift_psi)
    p = drift.add_parser("history", help="drift history per model and date, with the retraining decision")
    p.add_argument("--model", default=None)
    p.add_argument("--since", default=None, help="YYYY-MM-DD")
    p.add_argument("--until", default=None, help="YYYY-MM-DD")
    p.add_argument("--reasons", action="store_true",
                   help="print the reasons of the decision shown (the one that fired a retrain, else the latest)")
    p.add_argument("--all-decisions", action="store_true", help="print every decision of each date with its reasons")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_drift_history)
    return parser


def _family_commands(sub) -> None:
    """Each family's own commands: a ``cli.py`` beside its ``family.py`` with ``add_commands(subparsers)``.

    The module is found from where the family's class lives, not from its name, so a family
    registered from elsewhere (a plugin, a test) without a CLI adds nothing and breaks nothing.
    """
    import importlib
    import importlib.util

    from biotune.family import families

    packages = {type(family).__module__.rpartition(".")[0] for family in families().values()}
    for package in sorted(p for p in packages if p):
        if importlib.util.find_spec(f"{package}.cli") is not None:
            importlib.import_module(f"{package}.cli").add_commands(sub)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BiotuneError as exc:
        print(f"error ({type(exc).__name__}): {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
