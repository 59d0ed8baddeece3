"""Read a LLaMA-Factory training config as ``llamafactory-cli train`` does, and find the files it trains on.

Arguments are read like LLaMA-Factory 0.9's ``read_args``: a ``.yaml``/``.yml``/``.json`` file first, then
``key=value`` overrides merged with OmegaConf (``learning_rate=1e-4``, ``bastion.strict=true``); any other
argument list is passed through as ``--key value`` flags. They are then parsed with LLaMA-Factory's own
argument dataclasses, so defaults (``dataset_dir: data``) and list splitting (``dataset: a,b``) are its own.

Datasets are resolved through ``<dataset_dir>/dataset_info.json`` with LLaMA-Factory's own
``get_dataset_list``: ``file_name`` entries are local files or folders (every file in a folder is read).
Roles: ``dataset`` -> ``train`` (``ranking: true`` entries, the pairs for dpo/rm -> ``preference``),
``eval_dataset`` -> ``eval``. A pre-tokenized ``tokenized_path`` that already holds data replaces them all,
as it does in LLaMA-Factory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bastion.errors import ConfigError, InputError
from bastion.plugins.llamafactory.settings import BastionSettings, split_settings
from bastion.provenance.redaction import redact_argv, redact_secrets

logger = logging.getLogger("bastion")

DATASET_INFO = "dataset_info.json"
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
_REMOTE_DIRS = ("ONLINE",)
Args = dict[str, Any] | list[str]


@dataclass(frozen=True)
class ResolvedDataset:
    """One dataset name from the config, the local files it stands for and their role in training."""

    name: str
    role: str
    load_from: str
    location: str
    files: tuple[Path, ...] = ()

    @property
    def local(self) -> bool:
        return self.load_from == "file"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "load_from": self.load_from,
            "location": self.location,
            "files": [str(f) for f in self.files],
        }


@dataclass(frozen=True)
class LlamaFactoryRun:
    """A training config read and resolved: what LLaMA-Factory gets and what Bastion records."""

    args: Args
    """The arguments for ``llamafactory.train.tuner.run_exp`` (the ``bastion:`` section removed)."""
    settings: BastionSettings
    source: str
    stage: str
    do_train: bool
    model_name_or_path: str | None
    adapter_name_or_path: str | None
    output_dir: Path
    dataset_dir: str
    dataset_info: Path | None
    datasets: tuple[ResolvedDataset, ...] = ()
    tokenized_path: Path | None = None
    unhashed: tuple[str, ...] = field(default=())
    """Inputs that are not local files (hub models or datasets): named in the record, not hashed."""
    val_size: float = 0.0
    """``val_size``: an eval split LLaMA-Factory carves from the training data (fraction, or a count above 1)."""
    seed: int = 42
    """``seed`` (TrainingArguments): the seed of that split."""
    streaming: bool = False
    max_samples: int | None = None

    @property
    def base_model(self) -> Path | None:
        """The local model directory (also the tokenizer's), or ``None`` for a hub id."""
        if self.model_name_or_path is None:
            return None
        path = Path(self.model_name_or_path).expanduser()
        return path if path.exists() else None

    def carved_from(self) -> Path | None:
        """The training file LLaMA-Factory carves its ``val_size`` eval split from, when Bastion can redo the carve.

        LLaMA-Factory 0.9 (``data_utils.split_dataset``) calls ``train_test_split(test_size=val_size,
        seed=seed)`` (shuffled) on the merged training dataset. With one local JSON/JSONL training file,
        no ``max_samples`` and no streaming, that dataset is the file's records in order, so the same
        split can be carved from the file and recorded record by record.
        """
        if self.val_size <= 1e-6 or self.streaming or self.max_samples is not None or self.tokenized_path:
            return None
        train = [ds for ds in self.datasets if ds.role == "train"]
        if len(train) != 1 or len(train[0].files) != 1 or not train[0].local:
            return None
        f = train[0].files[0]
        return f if f.suffix.lower() in (".json", ".jsonl") else None

    def split_note(self) -> str | None:
        """Why a ``val_size`` eval split is not recorded record by record (``None`` when it is, or when none)."""
        if self.val_size <= 1e-6 or self.carved_from() is not None:
            return None
        return (
            f"val_size={self.val_size}: the eval split LLaMA-Factory carves from the training data is not "
            "recorded record by record (it is only reproducible from one local JSON/JSONL training file "
            "without max_samples or streaming); the training files are recorded whole, as train"
        )

    def dataset_inputs(self) -> list[Any]:
        """``DatasetInput`` objects for :class:`bastion.plugins.hf.BastionCallback`, one per local file.

        A ``val_size`` split that can be reproduced (:meth:`carved_from`) becomes its two sides.
        """
        from bastion.provenance.inputs import DatasetInput

        out: list[Any] = []
        parent = self.carved_from()
        for ds in self.datasets:
            if parent is not None and ds.role == "train":
                size = int(self.val_size) if self.val_size > 1 else self.val_size
                out.extend(DatasetInput.carved(parent, test_size=size, seed=self.seed, shuffle=True, name=ds.name))
                continue
            for f in ds.files:
                name = ds.name if len(ds.files) == 1 else f"{ds.name}/{f.name}"
                out.append(DatasetInput(f, role=ds.role, name=name))
        return out

    def recorded_config(self) -> dict[str, Any]:
        """The config as recorded in the run: LLaMA-Factory's arguments (credentials redacted) and what
        Bastion resolved from them (the dataset_info.json digest, the dataset name -> file mapping)."""
        info: dict[str, Any] | None = None
        if self.dataset_info is not None and self.dataset_info.is_file():
            digest = hashlib.sha256(self.dataset_info.read_bytes()).hexdigest()
            info = {"path": str(self.dataset_info), "sha256": digest}
        return {
            # Credentials withheld here (argv: ``--hf_hub_token X`` pairs); the callback records where.
            "llamafactory": redact_secrets(self.args).value
            if isinstance(self.args, dict)
            else {"argv": redact_argv(self.args).value},
            "source": self.source,
            "stage": self.stage,
            "model_name_or_path": self.model_name_or_path,
            "adapter_name_or_path": self.adapter_name_or_path,
            "output_dir": str(self.output_dir),
            "dataset_dir": self.dataset_dir,
            "dataset_info": info,
            "datasets": [d.as_dict() for d in self.datasets],
            "tokenized_path": None if self.tokenized_path is None else str(self.tokenized_path),
            "unhashed_inputs": list(self.unhashed),
        }


# ---------------------------------------------------------------------------------------------- reading


def read_config(argv: Sequence[str]) -> tuple[Args, BastionSettings, str]:
    """``argv`` as ``llamafactory-cli train`` reads it -> (LLaMA-Factory args, Bastion settings, source name)."""
    argv = [str(a) for a in argv]
    if not argv or not argv[0].endswith(CONFIG_SUFFIXES):
        return argv, BastionSettings(source="command line"), "command line"
    path = Path(argv[0])
    merged = _merge_overrides(_load_file(path), argv[1:], path)
    args, settings = split_settings(merged, source=argv[0])
    return args, settings, argv[0]


def config_from_mapping(config: Mapping[str, Any], *, source: str = "config") -> tuple[dict[str, Any], BastionSettings]:
    """A config given as a dict (Python API): (LLaMA-Factory args, Bastion settings)."""
    if not isinstance(config, Mapping):
        raise ConfigError(f"{source}: expected a mapping of LLaMA-Factory arguments, got {type(config).__name__}")
    return split_settings(config, source=source)


def _load_file(path: Path) -> Any:
    import yaml
    from omegaconf import OmegaConf

    if not path.is_file():
        raise InputError(
            "training config not found" if not path.exists() else "training config is not a file",
            path=path,
            hint="pass the LLaMA-Factory YAML file, e.g. bastion llamafactory train examples/train_lora/sft.yaml",
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the training config: {exc}", path=path) from None
    try:
        # yaml.safe_load first for line numbers in syntax errors; OmegaConf below does the real load.
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc.msg}", path=path, line=exc.lineno) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError(f"invalid YAML: {problem}", path=path, line=None if mark is None else mark.line + 1) from None
    if not isinstance(data, Mapping):
        raise InputError(
            f"a training config must be a mapping of LLaMA-Factory arguments, got {type(data).__name__}",
            path=path,
            hint="e.g. 'stage: sft', 'model_name_or_path: ...', 'dataset: ...', 'output_dir: ...'",
        )
    if path.suffix == ".json":
        return OmegaConf.create(data)
    return OmegaConf.load(path.absolute())


def _merge_overrides(base: Any, overrides: Sequence[str], path: Path) -> dict[str, Any]:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    for item in overrides:
        if "=" not in item or item.startswith("-"):
            raise ConfigError(
                f"override {item!r} after {path} is not KEY=VALUE",
                hint="write overrides as key=value after the config file, e.g. learning_rate=1e-4; "
                "Bastion's own flags go before the config file",
            )
    try:
        merged = OmegaConf.to_container(OmegaConf.merge(base, OmegaConf.from_cli(list(overrides))), resolve=True)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{path}: cannot apply the overrides {' '.join(overrides)}: {exc}") from None
    assert isinstance(merged, dict)
    return {str(k): v for k, v in merged.items()}


# -------------------------------------------------------------------------------------------- resolving


@dataclass
class _Outputs:
    """The ``TrainingArguments`` fields Bastion needs, parsed without building ``TrainingArguments``
    (whose initialisation sets up accelerator state, which a torchrun parent process must not do)."""

    output_dir: str | None = None
    do_train: bool = False
    seed: int = 42


def parse_train_args(args: Args) -> tuple[Any, Any, Any, _Outputs]:
    """LLaMA-Factory's own model, data and finetuning dataclasses, plus output_dir/do_train.

    Unknown keys are let through here: LLaMA-Factory rejects them itself, with its own message.
    """
    from llamafactory.hparams import DataArguments, FinetuningArguments, ModelArguments
    from transformers import HfArgumentParser

    parser = HfArgumentParser([ModelArguments, DataArguments, FinetuningArguments, _Outputs])  # type: ignore[arg-type,list-item]
    if isinstance(args, dict):
        parsed = tuple(parser.parse_dict(args, allow_extra_keys=True))
    else:
        parsed = tuple(parser.parse_args_into_dataclasses(args=list(args), return_remaining_strings=True))[:4]
    model_args, data_args, finetuning_args, outputs = parsed
    assert isinstance(outputs, _Outputs)
    return model_args, data_args, finetuning_args, outputs


def resolve(args: Args, settings: BastionSettings, source: str) -> LlamaFactoryRun:
    """Resolve model, datasets and output dir; every problem LLaMA-Factory would only hit after loading
    the model (an unknown dataset name, a missing data file) is raised here, before training."""
    model_args, data_args, finetuning_args, outputs = parse_train_args(args)
    dataset_dir = str(data_args.dataset_dir)
    unhashed: list[str] = []

    model = model_args.model_name_or_path
    if model is not None and not Path(model).expanduser().exists():
        if settings.strict:
            raise InputError(
                f"model_name_or_path {model!r} is not a local directory, so it cannot be hashed",
                path=source if source != "command line" else None,
                hint="download the model once and point model_name_or_path at that directory, "
                "or run without strict to record the hub id only",
            )
        logger.warning("bastion: model %r is not a local directory; it is named in the record, not hashed", model)
        unhashed.append(f"model:{model}")

    tokenized: Path | None = None
    if data_args.tokenized_path is not None:
        tp = Path(data_args.tokenized_path)
        if tp.is_dir() and any(tp.iterdir()):
            tokenized = tp

    datasets: list[ResolvedDataset] = []
    info_path: Path | None = None
    if tokenized is not None:
        files = tuple(sorted(p for p in tokenized.rglob("*") if p.is_file()))
        datasets.append(ResolvedDataset("tokenized", "train", "file", str(tokenized), files))
    else:
        names = [(n, "train") for n in (data_args.dataset or [])]
        names += [(n, "eval") for n in (data_args.eval_dataset or [])]
        if names:
            info_path, resolved = _resolve_datasets(names, dataset_dir, source)
            datasets.extend(resolved)
    for ds in datasets:
        if not ds.local:
            if settings.strict:
                raise InputError(
                    f"dataset {ds.name!r} is loaded from {ds.load_from} ({ds.location}), so it cannot be hashed",
                    path=info_path,
                    hint="download it and describe it with a local file_name in dataset_info.json, "
                    "or run without strict to record its name only",
                )
            logger.warning(
                "bastion: dataset %r comes from %s; it is named in the record, not hashed", ds.name, ds.load_from
            )
            unhashed.append(f"dataset:{ds.name}:{ds.load_from}:{ds.location}")

    return LlamaFactoryRun(
        args=args,
        settings=settings,
        source=source,
        stage=str(finetuning_args.stage),
        do_train=bool(outputs.do_train),
        model_name_or_path=model,
        adapter_name_or_path=model_args.adapter_name_or_path,
        output_dir=Path(outputs.output_dir or "trainer_output"),  # transformers' default
        dataset_dir=dataset_dir,
        dataset_info=info_path,
        datasets=tuple(datasets),
        tokenized_path=tokenized,
        unhashed=tuple(unhashed),
        val_size=float(getattr(data_args, "val_size", 0.0) or 0.0),
        seed=int(outputs.seed),
        streaming=bool(getattr(data_args, "streaming", False)),
        max_samples=getattr(data_args, "max_samples", None),
    )


def _read_dataset_info(dataset_dir: str, names: list[tuple[str, str]], source: str) -> tuple[Path, dict[str, Any]]:
    info_path = Path(dataset_dir) / DATASET_INFO
    wanted = ", ".join(n for n, _ in names)
    if not info_path.is_file():
        raise InputError(
            f"{DATASET_INFO} not found, but the config names datasets ({wanted})",
            path=info_path,
            hint=f"LLaMA-Factory looks datasets up in <dataset_dir>/{DATASET_INFO}; set dataset_dir in "
            f"{source} to the folder that holds it (default: ./data)",
        )
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc.msg}", path=info_path, line=exc.lineno) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", path=info_path) from None
    if not isinstance(info, dict):
        raise InputError(f"{DATASET_INFO} must be a JSON object of dataset name -> description", path=info_path)
    return info_path, info


def _resolve_datasets(
    names: list[tuple[str, str]], dataset_dir: str, source: str
) -> tuple[Path | None, list[ResolvedDataset]]:
    from llamafactory.data.parser import get_dataset_list

    if dataset_dir == "ONLINE" or dataset_dir.startswith("REMOTE:"):
        return None, [ResolvedDataset(n, role, "hf_hub", f"{dataset_dir}:{n}") for n, role in names]
    info_path, info = _read_dataset_info(dataset_dir, names, source)
    defined = sorted(str(k) for k in info)
    for name, role in names:
        if name not in info:
            key = "eval_dataset" if role == "eval" else "dataset"
            shown = ", ".join(defined[:20]) + (" ..." if len(defined) > 20 else "") if defined else "(none)"
            raise InputError(
                f"dataset {name!r} (from '{key}' in {source}) is not defined in {DATASET_INFO}",
                path=info_path,
                hint=f"defined names: {shown}. Add an entry such as "
                f'"{name}": {{"file_name": "{name}.json"}} or fix the name in {source}',
            )
        if not isinstance(info[name], dict):
            raise InputError(f"entry {name!r} must be a JSON object", path=info_path)
    try:
        attrs = get_dataset_list([n for n, _ in names], dataset_dir)
    except (ValueError, KeyError) as exc:
        raise InputError(f"LLaMA-Factory cannot read {DATASET_INFO}: {exc}", path=info_path) from None

    out: list[ResolvedDataset] = []
    for (name, role), attr in zip(names, attrs, strict=True):
        if role == "train" and bool(getattr(attr, "ranking", False)):
            role = "preference"
        load_from = str(attr.load_from)
        if load_from != "file":
            out.append(ResolvedDataset(name, role, load_from, str(attr.dataset_name)))
            continue
        local = Path(os.path.join(dataset_dir, attr.dataset_name))
        if local.is_dir():
            files = tuple(sorted(p for p in local.iterdir() if p.is_file()))
            if not files:
                raise InputError(f"dataset {name!r}: the folder named by file_name holds no files", path=local)
        elif local.is_file():
            files = (local,)
        else:
            raise InputError(
                f"dataset {name!r}: file_name {attr.dataset_name!r} does not exist",
                path=local,
                hint=f"file_name in {info_path} is relative to dataset_dir ({dataset_dir})",
            )
        out.append(ResolvedDataset(name, role, "file", str(local), files))
    return info_path, out


__all__ = [
    "DATASET_INFO",
    "LlamaFactoryRun",
    "ResolvedDataset",
    "config_from_mapping",
    "parse_train_args",
    "read_config",
    "resolve",
]
