"""A run's results in the Hugging Face Hub's formats, so numbers leave the machine that made them.

Why these formats: lm-evaluation-harness's EvaluationTracker pushes a results JSON and per-sample
details to a Hub *dataset*; the Hub's community evals read ``.eval_results/*.yaml`` files (a list of
``{dataset: {id, task_id}, value, source}``) from model repositories. The export folder holds:

- ``results.json``: the provenance a reader needs to decide whether two runs are comparable (suite
  hash, model id and revision, scorers, settings, each method's file and sha256, library versions,
  device) and one summary per row; ``leaderboard/<stem>.json`` is the run's leaderboard JSON itself,
  byte for byte (every number, every interval);
- ``data/samples.parquet`` (one row per method and prompt) and ``data/leaderboard.parquet`` (one row
  per method and column), the two configs the dataset card declares for ``datasets.load_dataset``;
- ``README.md``: the dataset card; ``.eval_results/membench-<stem>.yaml``; ``figures/``: the
  report's frontier PNG when the run's report drew one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

RESULTS_FILE = "results.json"
EXPORT_SCHEMA = 1


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def provenance(board: dict[str, Any], source: bytes) -> dict[str, Any]:
    """What the numbers of a leaderboard JSON depend on, and ``compare_key``: the fields two runs
    must share before their rows go into one table (``board.site``)."""
    from membench_eval.report.render import scorer_metadata_keys

    meta = board.get("metadata") or {}
    prompts = _sha256(json.dumps(board.get("expected_prompts") or {}, sort_keys=True).encode())
    suite_hash = meta.get("suite_sha256") or f"prompt-set:{prompts}"
    scorers = {"sscd_backend": meta.get("sscd_backend"), **{k: meta.get(k) for k in scorer_metadata_keys()}}
    settings = {"generation": meta.get("generation"), "images_per_prompt": meta.get("images_per_prompt"),
                "limit": meta.get("limit"), "subset": meta.get("subset"),
                "bootstrap": {k: (board.get("bootstrap") or {}).get(k) for k in ("confidence", "cluster_method")}}
    key = {"suite": board.get("suite"), "suite_hash": suite_hash, "model": meta.get("model"),
           "model_revision": meta.get("model_revision"), "scorers": scorers, "settings": settings}
    return {
        "suite": board.get("suite"), "suite_hash": suite_hash, "suite_file": meta.get("suite_file"),
        "prompt_set_sha256": prompts, "model": meta.get("model"),
        "model_revision": meta.get("model_revision"),  # None: the run did not record one
        "scorers": scorers, "settings": settings, "seed": meta.get("seed"),
        "methods": meta.get("methods") or {}, "versions": meta.get("versions") or {},
        "device": meta.get("device"), "engine": meta.get("engine"), "coverage": meta.get("coverage"),
        "leaderboard_sha256": _sha256(source),
        "compare_key": key, "compare_id": _sha256(json.dumps(key, sort_keys=True, default=str).encode())[:16],
    }


def _row_summaries(board: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for r in board.get("rows", []):
        metrics = {}
        for key, m in (r.get("metrics") or {}).items():
            d = m.get("delta_to_base") or {}
            metrics[key] = {"mean": m.get("mean"), "low": m.get("low"), "high": m.get("high"),
                            "delta": d.get("mean"), "delta_low": d.get("low"), "delta_high": d.get("high"),
                            "reason": None if m.get("available") else m.get("reason")}
        out.append({"label": r["label"], "kind": r["kind"], "method": r.get("method"), "params": r.get("params"),
                    "complete": r.get("complete"), "method_path": r.get("method_path"),
                    "method_sha256": r.get("method_sha256"), "metrics": metrics})
    return out


def _parquet(path: Path, records: list[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(records), path)


def _samples(board: dict[str, Any], run_id: str) -> list[dict[str, Any]]:
    keys = sorted({k for p in board.get("per_prompt", []) for k in p.get("metrics", {})})
    return [{"run": run_id, "label": p["label"], "method": p["method"], "role": p["role"],
             "prompt_id": p["prompt_id"], "n_images": p["n_images"], "params": json.dumps(p.get("params") or {}),
             "memorized_ids": list(p.get("memorized_ids") or []),
             **{f"metric_{k}": p["metrics"].get(k) for k in keys},
             "per_image": json.dumps(p.get("per_image") or {})} for p in board.get("per_prompt", [])]


def _table_rows(rows: list[dict[str, Any]], run_id: str) -> list[dict[str, Any]]:
    return [{"run": run_id, "label": r["label"], "kind": r["kind"], "method": r["method"], "column": k,
             **{f: m[f] for f in ("mean", "low", "high", "delta", "delta_low", "delta_high")}, "reason": m["reason"]}
            for r in rows for k, m in r["metrics"].items()]


def eval_results_yaml(board: dict[str, Any], rows: list[dict[str, Any]], repo_id: str | None) -> str:
    """``.eval_results`` entries: one per method row and available main-table mean."""
    import yaml

    from membench_eval.metrics.registry import columns

    main = [c.key for c in columns("main")]
    entries = []
    for r in rows:
        if r["kind"] == "reference":
            continue
        for key in main:
            m = r["metrics"].get(key)
            if m is None or m["mean"] is None:
                continue
            entries.append({"dataset": {"id": f"membench/{board.get('suite')}", "task_id": key},
                            "value": round(float(m["mean"]), 4),
                            "notes": f"{r['label']}: 95% CI [{m['low']:.4f}, {m['high']:.4f}]",
                            "source": {"name": "membench-eval",
                                       **({"url": f"https://huggingface.co/datasets/{repo_id}"} if repo_id else {})}})
    return yaml.safe_dump(entries, sort_keys=False, allow_unicode=True)


def dataset_card(board: dict[str, Any], prov: dict[str, Any], rows: list[dict[str, Any]], stem: str) -> str:
    """README.md of the dataset: YAML header (configs for ``load_dataset``), then what it holds."""
    lines = ["---", "pretty_name: MemBench results " + str(board.get("suite")), "tags:", "- membench",
             "- memorization", "- text-to-image", "configs:", "- config_name: samples", "  data_files:",
             "  - split: train", "    path: data/samples.parquet", "- config_name: leaderboard", "  data_files:",
             "  - split: train", "    path: data/leaderboard.parquet", "---", "",
             f"# MemBench results: suite `{board.get('suite')}` (`{stem}`)", "",
             f"Model `{prov['model']}` (revision {prov['model_revision'] or 'not recorded'}), suite hash "
             f"`{prov['suite_hash']}`, scorers {', '.join(f'{k} `{v}`' for k, v in prov['scorers'].items() if v)}.",
             f"Coverage: {prov['coverage'] or 'not recorded'}.", "",
             "| row | kind | method file | sha256 |", "|---|---|---|---|"]
    lines += [f"| {r['label']} | {r['kind']} | {r['method_path'] or '-'} | {(r['method_sha256'] or '-')[:12]} |"
              for r in rows]
    lines += ["", "Files: `results.json` (provenance and per-row summaries), `leaderboard/*.json` (the run's full "
              "leaderboard JSON), `data/samples.parquet` (per prompt), `data/leaderboard.parquet` (per row and "
              "column), `.eval_results/*.yaml`.", "", "```python", "from datasets import load_dataset",
              'samples = load_dataset("<this repo>", "samples", split="train")', "```", ""]
    return "\n".join(lines)


def export_run(json_path: str | Path, to: str | Path, repo_id: str | None = None) -> Path:
    """Write the export folder of one leaderboard JSON into ``to``; returns ``to/results.json``."""
    from membench_eval.store.atomic import write_atomic

    src = Path(json_path)
    raw = src.read_bytes()
    board = json.loads(raw)
    stem = src.name[: -len(".json")]
    out = Path(to)
    out.mkdir(parents=True, exist_ok=True)
    prov = provenance(board, raw)
    run_id = f"{stem}-{prov['leaderboard_sha256'][:8]}"
    rows = _row_summaries(board)
    (out / "leaderboard").mkdir(exist_ok=True)
    shutil.copyfile(src, out / "leaderboard" / src.name)
    _parquet(out / "data" / "samples.parquet", _samples(board, run_id))
    _parquet(out / "data" / "leaderboard.parquet", _table_rows(rows, run_id))
    figures = []
    frontier = src.parent / f"{stem}_files" / "frontier.png"
    if frontier.is_file():
        (out / "figures").mkdir(exist_ok=True)
        shutil.copyfile(frontier, out / "figures" / "frontier.png")
        figures.append("figures/frontier.png")
    (out / ".eval_results").mkdir(exist_ok=True)
    write_atomic(out / ".eval_results" / f"membench-{stem}.yaml", eval_results_yaml(board, rows, repo_id))
    write_atomic(out / "README.md", dataset_card(board, prov, rows, stem))
    results = {"export_schema": EXPORT_SCHEMA, "run_id": run_id, "stem": stem, "provenance": prov,
               "leaderboard_json": f"leaderboard/{src.name}", "figures": figures, "rows": rows}
    write_atomic(out / RESULTS_FILE, json.dumps(results, indent=1, default=str) + "\n")
    return out / RESULTS_FILE


def upload(folder: str | Path, repo_id: str, token: str, endpoint: str | None = None) -> str:
    """Push the export folder to the dataset repo ``repo_id`` (created when missing); the commit's URL."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    from membench_eval.errors import MembenchError

    api = HfApi(endpoint=endpoint, token=token)
    try:
        api.create_repo(repo_id, repo_type="dataset", exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=str(folder),
                                 commit_message="membench export")
    except (HfHubHTTPError, OSError) as exc:
        raise MembenchError(f"upload of {folder} to the Hub dataset {repo_id} failed: {exc}") from None
    return str(getattr(info, "commit_url", info))
