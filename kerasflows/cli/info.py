"""`kerasflows info MODEL`: layers, parameter count, event dimension and training record.

MODEL is a `.keras` file, a model folder (e.g. `saved_models/moons`, whose
`manifest.json` is shown too) or an exported SavedModel directory (its
signatures are listed).
"""

import contextlib
import io
import json
import os
import shlex

from kerasflows.cli.common import HelpFormatter, is_saved_model, open_flow, plural, read_json_file
from kerasflows.cli.csv_files import column_list, name_list

__all__ = ["add_parser", "run", "describe"]


def add_parser(subparsers):
    p = subparsers.add_parser("info", help="describe a model: layers, parameters, training",
                              description=__doc__.split(":", 1)[1].strip(),
                              formatter_class=HelpFormatter)
    p.add_argument("model", help="a .keras file, a model folder or a SavedModel directory")
    p.add_argument("--json", action="store_true", help="print the description as JSON")
    return p


def _describe_saved_model(path):
    from kerasflows.export import load_saved_model, saved_model_metadata
    loaded = load_saved_model(path)
    signatures = {}
    for name, fn in sorted(loaded.signatures.items()):
        inputs = fn.structured_input_signature[1]
        signatures[name] = {
            "inputs": {k: list(v.shape) for k, v in sorted(inputs.items())},
            "input_dtypes": {k: v.dtype.name for k, v in sorted(inputs.items())},
            "outputs": {k: list(v.shape) for k, v in sorted(fn.structured_outputs.items())}}
    return {"model": path, "format": "SavedModel", "signatures": signatures,
            "metadata": saved_model_metadata(path)}


def describe(path):
    """A JSON-able description of the model at `path`."""
    from kerasflows.loading import model_file, training_record
    if is_saved_model(path):
        return _describe_saved_model(path)
    flow = open_flow(path)
    layers = [{"index": i, "name": l.name, "class": type(l).__name__,
               "parameters": int(sum(int(w.numpy().size) for w in l.weights)),
               "direction": getattr(l, "spline_direction", getattr(l, "affine_direction", None))}
              for i, l in enumerate(flow.flow_layers)]
    info = {"model": path, "format": ".keras", "class": type(flow).__name__,
            "event_dim": flow.event_dim, "context_dim": flow.context_dim, "base": flow.base,
            "base_df": None if flow.base_df is None else [float(v) for v in flow.base_df],
            "parameters": int(flow.count_params()), "layers": layers,
            "context_encoder": None, "training": training_record(model_file(path))}
    encoder = flow.context_encoder
    if encoder is not None:
        info["context_encoder"] = {
            "name": encoder.name, "class": type(encoder).__name__,
            "parameters": int(sum(int(w.numpy().size) for w in encoder.weights)),
            "features": flow.context_features}
    manifest = os.path.join(path, "manifest.json")
    if os.path.isdir(path) and os.path.isfile(manifest):
        info["manifest"] = read_json_file(manifest)
    return info


def _print_commands(record, manifest, directions=()):
    """The command that reproduces the model: the manifest's when there is one (the
    training record's may name temporary files), then the recorded one if it differs;
    each with a note where today's defaults would build another model (`_older_default`,
    `_older_direction`)."""
    recorded = record.get("command")
    rerun = (manifest or {}).get("command") or recorded
    notes = lambda command: (_older_default(record, command)
                             + _older_direction(directions, command))
    if rerun == recorded:
        print(f"command: {rerun}{notes(rerun)}")
        return
    print(f"command (manifest.json; reproduces the model): {rerun}{notes(rerun)}")
    if recorded is not None:
        print(f"as run (the training record in the model file): {recorded}{notes(recorded)}")


def _directions(info):
    """The directions (`spline_direction` / `affine_direction`) of the flow's layers
    that have one, as a set."""
    return {layer["direction"] for layer in info["layers"] if layer.get("direction")}


def _older_direction(directions, command):
    """A note for a command without `--direction` whose model's layers map in another
    direction than today's default, "inverse" (a model made before the setting
    existed, whose files load as "forward": the shipped u3_nsf)."""
    if (not command or "--direction" in command or len(directions) != 1
            or command.split()[1:2] not in (["train"], ["fit-target"])):
        return ""
    (direction,) = directions
    if direction == "inverse":
        return ""
    return (f"\n  (its layers map with --direction {direction}, as every model made before "
            "--direction existed does: today this command builds 'inverse' layers; add "
            f"--direction {direction})")


def _older_default(record, command):
    """A note for a `train` command recorded before it standardized a data file by
    default (its record has no `standardize`): run today, it would add a standardize
    layer if its DATA is one `train` standardizes by default (a file, or a dataset of
    `datasets.OFF_SCALE_NAMES`). Not for `fit-target`'s, which has no data file and
    no such option, nor for a command naming another dataset (the manifests' of the
    shipped conditional models, whose training record names the files it wrote)."""
    from kerasflows import datasets
    from kerasflows.cli.data import is_dataset_name
    if (not command or "standardize" in record or "standardize" in command
            or command.split()[1:2] != ["train"]):
        return ""
    data = _train_data(command)
    if data is None or (is_dataset_name(data) and data not in datasets.OFF_SCALE_NAMES):
        return ""
    return ("\n  (recorded before train standardized a data file by default: today this "
            "command adds a standardize layer the model does not have; add --no-standardize)")


def _train_data(command):
    """The DATA of a recorded `kerasflows train ...` command, or None where the
    command does not parse (written by another version)."""
    from kerasflows.cli import build_parser
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            args, _ = build_parser().parse_known_args(shlex.split(command)[1:])
    except (SystemExit, ValueError):
        return None
    return getattr(args, "data", None)


def _context_ranges_text(ranges):
    """" (training contexts 10.1..29.9)" from a record's `context_range` (the 0.5% and
    99.5% quantiles per column), or "" without one."""
    try:
        spans = [f"{float(lo):.3g}..{float(hi):.3g}" for lo, hi in ranges]
    except (TypeError, ValueError):
        return ""
    return f" (training contexts {', '.join(spans)})" if spans else ""


def _df_text(info):
    """A Student-t base's degrees of freedom, as `info` prints them (" (df 3.2, 2.0)")."""
    df = info.get("base_df")
    return "" if not df else f" (df {', '.join(f'{v:.3g}' for v in df)})"


def _print_flow(info):
    print(f"{info['model']}: {info['class']}, event_dim={info['event_dim']}, "
          f"context_dim={info['context_dim']}, base={info['base']}{_df_text(info)}, "
          f"{info['parameters']:,} parameters")
    for layer in info["layers"]:
        print(f"  {layer['index']:>3}  {layer['name']:<20} {layer['class']:<22} "
              f"{layer['parameters']:>9,} params")
    encoder = info["context_encoder"]
    if encoder:
        print(f"  context encoder: {encoder['name']} ({encoder['class']}, "
              f"{encoder['parameters']:,} params), context_dim={info['context_dim']} -> "
              f"{encoder['features']} features the layers see")
    record = info["training"] or {}
    if record.get("target") is not None:          # `fit-target`: fitted to a density
        fit = ", ".join(f"{k} {record[k]:.4f}" for k in ("elbo", "log_z", "reverse_kl", "ess")
                        if isinstance(record.get(k), (int, float)))
        print(f"fitted to: target {record['target']}, recipe {record.get('recipe')}, "
              f"{plural(record.get('epochs'), 'epoch')} of {plural(record.get('steps'), 'step')}; {fit}")
        _print_commands(record, info.get("manifest"), _directions(info))
    elif record:
        nlls = ", ".join(f"{k} {record[k + '_nll']:.4f}" for k in ("train", "validation", "test")
                         if isinstance(record.get(k + "_nll"), (int, float)))
        data, manifest = record.get("data"), info.get("manifest") or {}
        if isinstance(data, str) and not os.path.exists(data) and manifest.get("data"):
            data = f"{data} (no longer there; it held {manifest['data']})"
        if "epochs_done" in record:         # written by --save-every-epoch during the run
            losses = (record.get("history") or {}).get("loss") or [None]
            done = (f"{record['epochs_done']} of {plural(record.get('epochs'), 'epoch')} (the "
                    "file --save-every-epoch wrote after that epoch: the run had not finished)")
            scores = (f"training loss {losses[-1]:.4f}" if isinstance(losses[-1], (int, float))
                      else "no NLL measured")
        else:
            done, scores = plural(record.get('epochs'), 'epoch'), f"NLL (nats) {nlls}"
        print(f"trained on: {data} ({record.get('n_train')} rows), recipe "
              f"{record.get('recipe')}, {done}; {scores}")
        if record.get("columns"):
            print(f"columns: {name_list(map(str, record['columns']))}")
        if record.get("context_columns"):
            print(f"context columns: {name_list(map(str, record['context_columns']))}"
                  + _context_ranges_text(record.get("context_range")))
        if _indices(record.get("dequantized_columns")):
            print(f"dequantized (--dequantize): "
                  f"{column_list(record['dequantized_columns'], record.get('columns'))}")
        _print_commands(record, info.get("manifest"), _directions(info))
    else:
        print("trained on: unknown (no training record in the file)")
    said = _manifest_text(info.get("manifest"))
    if said:
        print(f"manifest: {said}")


def _manifest_text(manifest):
    """What a model folder's manifest says of the model, the fields it has a value
    for (a `fit-target --model-dir` folder's: its target and fit, not a dataset)."""
    if not isinstance(manifest, dict):
        return ""
    fields = (("dataset", "dataset", "{}"), ("test_nll", "test NLL", "{}"),
              ("true_entropy", "true entropy", "{}"), ("target", "target", "{}"),
              ("elbo", "ELBO", "{:.4f}"), ("log_z", "log Z", "{:.4f}"), ("ess", "ESS", "{:.3f}"))
    parts = []
    for key, name, form in fields:
        value = manifest.get(key)
        if value is not None:
            try:
                parts.append(f"{name} {form.format(value)}")
            except (TypeError, ValueError):
                parts.append(f"{name} {value}")
    return ", ".join(parts)


def _indices(value):
    """Whether a record's or metadata's `value` is a non-empty list of column indices."""
    return (isinstance(value, list) and bool(value)
            and all(isinstance(k, int) and k >= 0 for k in value))


def run(args):
    info = describe(args.model)
    if args.json:
        print(json.dumps(info, indent=1))
    elif info["format"] == "SavedModel":
        print(f"{info['model']}: SavedModel with signatures")
        for name, sig in info["signatures"].items():
            print(f"  {name}: {sig['inputs']} -> {sig['outputs']}")
        meta = info["metadata"] or {}
        served = info["signatures"].get("serving_default", {}).get("input_dtypes", {})
        if "x" in served:       # a client sends x (z, context) in this dtype
            print(f"inputs: {served['x']} (n and seed of sample: int32)")
        if meta.get("context_dim"):
            classes = meta.get("context_classes")
            names = meta.get("context_columns")
            print(f"context: {plural(meta['context_dim'], 'column')}"
                  + (f" ({name_list(map(str, names))})" if names else "")
                  + (f", a class label 0..{classes - 1}" if classes else ""))
        if meta.get("layers"):
            print(f"layers ({len(meta['layers'])}): {', '.join(map(str, meta['layers']))}")
        if meta.get("base"):
            print(f"base: {meta['base']}{_df_text(meta)}")
        if meta.get("columns"):
            print(f"columns: {name_list(map(str, meta['columns']))}")
        if _indices(meta.get("dequantized_columns")):
            print(f"dequantized: {column_list(meta['dequantized_columns'], meta.get('columns'))}")
    else:
        _print_flow(info)
    return 0
