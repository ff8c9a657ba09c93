"""``biotune mood`` sub-commands for personal data: import-health, label, predict.

``add_commands(mood_subparsers)`` adds them to the existing ``mood`` command group; each
handler is ``cmd_x(args) -> int`` and lets typed errors propagate (the main CLI prints them).
"""

from __future__ import annotations

import json


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True, default=str))


def cmd_import_health(args) -> int:
    """Import an Apple Health export.zip (or a sleep-episode CSV) for one person."""
    from biotune.mood.personal import store
    from biotune.mood.personal.health import import_health, parse_offset

    if str(args.export).lower().endswith(".csv"):
        from biotune.mood.personal.sleepcsv import import_sleep_csv

        series, episodes, report = import_sleep_csv(args.export)
    else:
        series, episodes, report = import_health(args.export, assume_offset=parse_offset(args.assume_offset))
    paths = store.write_import(args.person, series, episodes, report, base=args.out)
    nights = episodes["minutes_sleep"].to_numpy() if len(episodes) else []
    summary = {"person": args.person, "days": series.days, "first_day": series.start_date.isoformat(),
               "sleep_episodes": int(len(episodes)),
               "mean_sleep_hours_per_episode": round(float(sum(nights)) / max(len(nights), 1) / 60.0, 2),
               "duplicates_dropped": report.get("duplicates_dropped"), "mb_per_s": report.get("mb_per_s"),
               "written": paths}
    if args.json:
        _print_json(summary)
    else:
        print(f"imported {summary['days']} days, {summary['sleep_episodes']} sleep episodes "
              f"({summary['mean_sleep_hours_per_episode']} h asleep per episode) for {args.person}")
        for k, v in paths.items():
            print(f"  {k:9} {v}")
    return 0


def _label_line(label) -> str:
    return f"{label.person}  {label.describe()}"


def cmd_label_episode(args) -> int:
    """Store a dated episode (depressive, manic, hypomanic or mixed) for a person."""
    import sys

    from biotune.mood.personal import labels

    label, warnings = labels.add(args.person, args.kind, args.date_from, args.date_to, args.severity,
                                 require_known=not args.new_person, store_base=args.store)
    print(f"stored {_label_line(label)}")
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    return 0


def cmd_label_baseline(args) -> int:
    """Store a euthymic (no episode) period for a person."""
    from biotune.mood.personal import labels

    label, _ = labels.add(args.person, "baseline", args.date_from, args.date_to, None,
                          require_known=not args.new_person, store_base=args.store)
    print(f"stored {_label_line(label)}")
    return 0


def cmd_label_list(args) -> int:
    """List labels (one person or everyone), by pseudonym."""
    from biotune.mood.personal import labels

    rows = labels.list_labels(args.person, include_deleted=args.all)
    if args.json:
        _print_json([r.as_dict() for r in rows])
        return 0
    if not rows:
        print("no labels yet (biotune mood label episode --person P --kind depressive --from D --to D)")
        return 0
    for r in rows:
        print(_label_line(r) + (f"  [withdrawn {r.deleted_at:%Y-%m-%d %H:%M}]" if r.deleted_at else ""))
    return 0


def cmd_label_undo(args) -> int:
    """Withdraw the person's most recently entered label."""
    from biotune.mood.personal import labels

    label = labels.undo(args.person)
    print(f"withdrew {_label_line(label)}")
    return 0


def cmd_predict(args) -> int:
    """Tomorrow's episode probabilities for a person: probability, interval, which model served."""
    from biotune import storage
    from biotune.errors import MissingInputError
    from biotune.mood.personal import predict
    from biotune.mood.personal.labels import TASKS
    from biotune.mood.personal.population import default_dir

    tasks = args.tasks.split(",") if args.tasks else list(TASKS)
    wanted = [t for t in tasks if storage.exists(storage.join(args.population, t, "population.json")
                                                  if args.population else storage.join(default_dir(t), "population.json"))]
    if not wanted:
        raise MissingInputError(f"no population models for {', '.join(tasks)}",
                                where=args.population or default_dir(tasks[0]),
                                fix="run the mood_personal_calibration DAG (it writes the population bundle) or pass "
                                    "--population DIR")
    preds = predict.predict(args.person, predict.load_populations(wanted, args.population), args.date,
                            base=args.store, max_width=args.max_width)
    if args.json:
        print(predict.json_lines(preds))
    else:
        for p in preds:
            print(predict.format_prediction(p))
    return 0


def add_commands(mood_subparsers) -> None:
    """Add import-health, label and predict under ``biotune mood``."""
    p = mood_subparsers.add_parser("import-health", help="import an Apple Health export.zip or a sleep CSV")
    p.add_argument("export", help="export.zip from the Health app, export.xml, or a sleep-episode CSV")
    p.add_argument("--person", required=True, help="the person's id (stored pseudonymously)")
    p.add_argument("--out", default=None, help="store root (default: <lake>/personal)")
    p.add_argument("--assume-offset", default=None,
                   help="UTC offset (+HHMM) for dates written without one (never needed for Health app exports)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_import_health)

    lab = mood_subparsers.add_parser("label", help="dated mood-episode labels per person").add_subparsers(
        dest="label_cmd", required=True)
    for name, func, kinds in (("episode", cmd_label_episode, True), ("baseline", cmd_label_baseline, False)):
        p = lab.add_parser(name, help="store an episode" if kinds else "store a period without episode")
        p.add_argument("--person", required=True)
        if kinds:
            from biotune.mood.personal.labels import EPISODE_KINDS

            p.add_argument("--kind", required=True, choices=EPISODE_KINDS)
            p.add_argument("--severity", type=int, default=None, help="1 (mild) to 5 (severe)")
        p.add_argument("--from", dest="date_from", required=True, help="first day, YYYY-MM-DD")
        p.add_argument("--to", dest="date_to", required=True, help="last day (inclusive), YYYY-MM-DD")
        p.add_argument("--new-person", action="store_true", help="allow a person with no imported data yet")
        p.add_argument("--store", default=None, help="personal store root (default: <lake>/personal)")
        p.set_defaults(func=func)
    p = lab.add_parser("list", help="list labels")
    p.add_argument("--person", default=None)
    p.add_argument("--all", action="store_true", help="include withdrawn labels")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_label_list)
    p = lab.add_parser("undo", help="withdraw the person's most recent label")
    p.add_argument("--person", required=True)
    p.set_defaults(func=cmd_label_undo)

    p = mood_subparsers.add_parser("predict", help="episode probabilities for tomorrow, per task, for one person")
    p.add_argument("--person", required=True)
    p.add_argument("--date", default=None, help="YYYY-MM-DD (default: the last day with data)")
    p.add_argument("--tasks", default=None, help="comma-separated: depressive,manic,hypomanic (default: all)")
    p.add_argument("--population", default=None, help="population models folder (default: in the lake)")
    p.add_argument("--store", default=None, help="personal store root (default: <lake>/personal)")
    p.add_argument("--max-width", type=float, default=0.4, help="withhold when the interval is wider")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_predict)
