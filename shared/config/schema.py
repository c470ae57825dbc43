"""JSON Schemas for run configs and paper configs (STYLE.md rule 14: ``additionalProperties: false`` everywhere).

A run config is what one training run needs (docs/design.md); a paper config (``papers/<slug>/config.yaml``) holds
a partial run config as ``base``, named ``profiles`` (scale) and ``variants`` (method), and the paper's ``claims``.
"""
from __future__ import annotations

import copy

_NUM = {"type": "number"}
_INT_POS = {"type": "integer", "minimum": 1}
_INT_NN = {"type": "integer", "minimum": 0}
_OPT_INT_POS = {"type": ["integer", "null"], "minimum": 1}
_OPT_NUM = {"type": ["number", "null"]}
_KWARGS = {"type": "object"}  # forwarded to a registry factory, which rejects unknown names itself


def _obj(properties: dict, required: tuple[str, ...] = ()) -> dict:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


RUN_SCHEMA = _obj(
    {
        "data": _obj(
            {
                "dataset": {"enum": ["cifar10", "cifar100", "wikitext2"]},
                "data_dir": {"type": "string"},
                "download": {"type": "boolean"},
                "subset_per_class": _OPT_INT_POS,
                "val_per_class": _INT_NN,
                "test_subset": _OPT_INT_POS,
                "classes": {"type": ["array", "null"], "items": _INT_NN, "minItems": 2, "uniqueItems": True},
                "augment": _obj({"crop_padding": _INT_NN, "flip": {"type": "boolean"},
                                 "flip_mode": {"enum": ["random", "alternate"]},
                                 "pad_mode": {"enum": ["zeros", "reflect"]}}),
                "tokenizer": {"enum": ["word", "bpe"]},
                "bpe_vocab_size": {"type": "integer", "minimum": 260},
                "seq_len": _INT_POS,
                "lm_batching": {"enum": ["random", "contiguous"]},
                "eval_tokens": _OPT_INT_POS,
            }
        ),
        "model": _obj({"name": {"type": "string"}, "kwargs": _KWARGS}),
        "optimizer": _obj(
            {
                "name": {"type": "string"},
                "lr": {"type": "number", "exclusiveMinimum": 0},
                "weight_decay": {"type": "number", "minimum": 0},
                "no_decay_norm_bias": {"type": "boolean"},
                "lr_mult": _obj({kind: {"type": "number", "exclusiveMinimum": 0}
                                 for kind in ("decay", "no_decay", "norm_bias")}),
                "kwargs": _KWARGS,
            }
        ),
        "schedule": _obj(
            {
                "name": {"type": "string"},
                "warmup_steps": _INT_NN,
                "warmup_frac": {"type": "number", "minimum": 0, "maximum": 1},
                "kwargs": _KWARGS,
            }
        ),
        "train": _obj(
            {
                "steps": _OPT_INT_POS,
                "epochs": {"type": ["number", "null"], "exclusiveMinimum": 0},
                "batch_size": _INT_POS,
                "eval_batch_size": _INT_POS,
                "eval_every": _INT_NN,
                "log_every": _INT_POS,
                "checkpoint_every": _INT_NN,
                # steps after which the model's weights are kept as weights_<t>.pt (0 = at init; shared/train/loop.py)
                "keep_weights_at": {"type": "array", "items": _INT_NN, "uniqueItems": True},
                "grad_clip": {"type": ["number", "null"], "exclusiveMinimum": 0},
                "label_smoothing": {"type": "number", "minimum": 0, "maximum": 1},
                "precision": {"enum": ["fp32", "bf16", "fp16"]},
                "channels_last": {"type": "boolean"},
                "target_loss": _OPT_NUM,
                "divergence_loss": _OPT_NUM,
                "divergence_patience": _INT_POS,
                "lookahead": {"anyOf": [{"type": "null"}, _obj(
                    {"every": _INT_POS, "decay": {"type": "number", "minimum": 0, "maximum": 1},
                     "power": {"type": "number", "minimum": 0}}, required=("every", "decay", "power"))]},
                "tta_level": {"enum": [0, 1, 2]},
                "z_loss": {"type": "number", "minimum": 0},
                "probes": _obj(  # shared/probes; every: 0 = off
                    {"every": _INT_NN,
                     "names": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
                     "kwargs": {"type": "object", "additionalProperties": _KWARGS},
                     "batch_size": _INT_POS}),
            }
        ),
        "seed": _INT_NN,
        "device": {"enum": ["auto", "cpu", "cuda", "mps"]},
    }
)


def partial(schema: dict) -> dict:
    """The same schema with nothing required: what ``base``, profile and variant overrides must satisfy."""
    out = copy.deepcopy(schema)

    def strip(node: dict) -> None:
        if node.get("type") == "object":
            node["required"] = []
            for child in node.get("properties", {}).values():
                strip(child)

    strip(out)
    return out


_PARTIAL_RUN = partial(RUN_SCHEMA)
PARTIAL_RUN_SCHEMA = _PARTIAL_RUN  # a paper's `base`, a profile's or variant's overrides, a shared recipe
_NAME = {"type": "string", "pattern": "^[a-z0-9][a-z0-9_.-]*$"}

_SELECT = _obj({"metric": {"type": "string", "minLength": 1}, "mode": {"enum": ["max", "min"]}},
               required=("metric", "mode"))

CLAIM_SCHEMA = _obj(
    {
        "id": _NAME,
        "text": {"type": "string", "minLength": 1},
        "paper_value": {"type": ["string", "null"]},
        "metric": {"type": "string", "minLength": 1},
        # a vs variant b, a vs a fixed number (threshold: "reaches 94% accuracy"), or metric vs another metric of a's
        # own runs, paired by run (b_metric: "the permuted barrier is below the naive one"); exactly one of the three.
        # paired (with b only): a's and b's runs of the same seed form a pair (same init and data order), and the
        # per-seed differences are judged (verdict.judge_paired) instead of two independent samples
        "compare": {**_obj({"a": {"type": "string"}, "b": {"type": "string"}, "threshold": {"type": "number"},
                            "b_metric": {"type": "string"}, "paired": {"type": "boolean"}},
                           required=("a",)),
                    "oneOf": [{"required": ["b"]}, {"required": ["threshold"]}, {"required": ["b_metric"]}],
                    "if": {"required": ["paired"]}, "then": {"required": ["b"]}},
        "direction": {"enum": ["greater", "less"]},
        "margin": {"type": "number", "minimum": 0},
        "profiles": {"type": "array", "items": {"type": "string"}},
    },
    required=("id", "text", "metric", "compare", "direction"),
)

PAPER_SCHEMA = _obj(
    {
        "paper": _obj(
            {
                "title": {"type": "string"},
                "arxiv": {"type": "string"},
                "authors": {"type": "string"},
                "year": {"type": "integer"},
            },
            required=("title", "arxiv", "authors", "year"),
        ),
        "base": _PARTIAL_RUN,
        "profiles": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": _NAME,
            "additionalProperties": _obj(
                {
                    "description": {"type": "string"},
                    "seeds": {"type": "array", "items": _INT_NN, "minItems": 1},
                    # start from shared/config/recipes/<recipe>.yaml instead of the paper's `base` (docs/design.md)
                    "recipe": _NAME,
                    "overrides": _PARTIAL_RUN,
                    # {variant glob: overrides} applied after the variant's own: a profile's scale per task, when
                    # one config holds variants of several tasks (e.g. "lm-*" gets the LM's steps and model size)
                    "overrides_for": {"type": "object", "additionalProperties": _PARTIAL_RUN},
                    # run only the first k grid points of each swept variant (shared/config/sweep.py)
                    "grid_points": _INT_POS,
                    # run only the variants matching these globs (all when absent): a profile that cannot afford
                    # some variants; a claim naming a left-out variant must list its profiles without this one
                    "variants": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
                },
                required=("seeds",),
            ),
        },
        "variants": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": _NAME,
            # seed_offset: the run's seed is the profile's seed + offset (an independent replicate of another
            # variant, e.g. the second model of a pair for mode connectivity); the run keeps the profile's seed name
            # pair_with: the variant whose run of the same seed is this run's partner in a paper's pair analysis
            "additionalProperties": _obj({"description": {"type": "string"}, "overrides": _PARTIAL_RUN,
                                          "seed_offset": _INT_NN, "pair_with": {"type": ["string", "null"]}}),
        },
        "claims": {"type": "array", "items": CLAIM_SCHEMA},
        "sweep": _obj(  # shared/config/sweep.py
            {
                "select": _SELECT,
                "select_by_variant": {"type": "object", "propertyNames": _NAME, "additionalProperties": _SELECT},
                "grid": {
                    "type": "object",
                    "minProperties": 1,
                    "propertyNames": _NAME,
                    "additionalProperties": {
                        "type": "object",
                        "minProperties": 1,
                        "propertyNames": {"type": "string", "pattern": "^[a-z_]+(\\.[a-z0-9_]+)+$"},
                        "additionalProperties": {"type": "array", "minItems": 1,
                                                 "items": {"type": ["number", "string", "boolean"]}},
                    },
                },
            },
            required=("select", "grid"),
        ),
        # per-run analysis of a paper's own (its rules.smk writes <run dir>/derived.json: {"metrics": {...}}),
        # merged into the run's row by `repro aggregate`, so claims can name those metrics
        "analysis": _obj({"derived": {"type": "boolean"}}),
        # per-run scalars from probe records at each run's first or last probe step, or over all its steps
        # (shared/results/probes.py ``probe_metrics``), added to the run's row by `repro aggregate` so claims can
        # name them
        "probe_metrics": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": _NAME,
            "additionalProperties": _obj(
                {"probe": _NAME, "key": {"type": "string", "minLength": 1},
                 "reduce": {"enum": ["last", "first", "max", "min", "mean", "last_over_first", "cv", "frac_above"]},
                 "threshold": {"type": "number"},  # with reduce: frac_above
                 "layers": {"type": "string", "minLength": 1},  # a glob over layer names, e.g. "blocks.*"
                 # which probe record: the run's first or last (default), or all of them (a scalar key, over steps)
                 "at": {"enum": ["first", "last", "all"]}},
                required=("probe", "key", "reduce")),
        },
        # one table across the papers sharing a toolkit: results/<name>/<profile>/cluster.md (shared/results/cluster.py)
        "cluster": _obj({"name": _NAME, "metrics": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
                        required=("name", "metrics")),
        "benchmark": _obj(  # shared/results/benchmark.py
            {
                "tasks": {
                    "type": "object",
                    "minProperties": 1,
                    "propertyNames": _NAME,
                    "additionalProperties": _obj(
                        {"variants": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                         "baseline": {"type": "string"}, "time_reference": {"type": "string"},
                         # the selection metric at initialization: adds `sweep_sensitivity` (shared/results/sweep.py)
                         "init_value": {"type": "number"}},
                        required=("variants", "baseline", "time_reference")),
                },
                # extra per-run metrics shown per method (e.g. probe_metrics entries)
                "columns": {"type": "array", "items": {"type": "string"}},
            },
            required=("tasks",),
        ),
    },
    required=("paper", "base", "profiles", "variants"),
)
