"""``vaesim train``: train one VAE with checkpoints through training."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from vaesim.models.names import MAIN_PARAMS, OBJECTIVE_NAMES

# The default checkpoint schedule: the initial weights, then 10 log-spaced steps (as studies include step 0);
# a short run gets one log-spaced checkpoint per 100 steps instead (100 steps: 0 and 100).
DEFAULT_CHECKPOINTS = "0,log:10"
#: the paper's training budget (disentanglement_lib's 300,000 steps), used when --steps is not given
DEFAULT_STEPS = 300_000
#: without a terminal, one progress line at most this often (seconds)
LINE_EVERY = 60.0


def default_checkpoints(steps: int) -> str:
    """``0,log:10``; under 1,000 steps one log-spaced step per 100 steps; under 200 steps the first and last."""
    count = min(10, steps // 100)
    return f"0,log:{count}" if count >= 2 else "0"  # the last step is always saved


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` only where there is a real default to show (not for required or None)."""

    def _get_help_string(self, action):
        if action.required or action.default is None or action.default == [] or action.default is False:
            return action.help
        return super()._get_help_string(action)


def register(subparsers) -> None:
    """Add ``vaesim train`` to the ``vaesim`` parser."""
    parser = subparsers.add_parser(
        "train",
        help="train one VAE (resumable; checkpoints through training)",
        description=(
            "Train one VAE of the study on a dataset, writing checkpoints, metrics.jsonl and DONE to --out. "
            "Rerunning the same command resumes a killed run and does nothing for a finished one."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--dataset", default="dsprites-procedural", help="dataset name (see vaesim data list)")
    parser.add_argument("--data-root", default=None,
                        help="data root holding the dataset's folder (default: $VAESIM_DATA, else "
                             "$XDG_CACHE_HOME/vaesim/data, else ~/.cache/vaesim/data)")
    parser.add_argument("--objective", default="beta_vae", help=f"one of: {', '.join(OBJECTIVE_NAMES)}")
    main_params = ", ".join(f"{param} for {name}" for name, param in MAIN_PARAMS.items())
    parser.add_argument(
        "--param",
        default=None,
        help=f"value of the objective's main parameter ({main_params}); default: the objective's own default",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any other objective parameter, e.g. --set gamma=1000 --set sampling=stratified (repeatable)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed of weights and minibatch order")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"training steps (optimizer updates; default: the paper's {DEFAULT_STEPS:,}, hours on a "
                             "CPU)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per step")
    parser.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate")
    parser.add_argument("--latent-dim", type=int, default=10, help="number of latent dimensions")
    parser.add_argument("--architecture", default="conv", metavar="NAME",
                        help="encoder/decoder: conv or fc (Locatello et al. 2019: convolutional or fully "
                             "connected), or your own VAE as a plug-in module:factory on the Python path "
                             "(docs/own-model.md)")
    parser.add_argument("--reconstruction", choices=["bernoulli", "gaussian"], default="bernoulli",
                        help="reconstruction likelihood of a pixel")
    parser.add_argument(
        "--checkpoints",
        default=None,
        help="schedule: every:N, log:N (dense early), even:N, steps '0,100,1000', or a mix such as '0,log:10' "
             f"(default: {DEFAULT_CHECKPOINTS}; under 1,000 steps one log-spaced checkpoint per 100 steps, "
             "under 200 only the first and the last)",
    )
    parser.add_argument("--log-every", type=int, default=100, help="metrics row every N steps")
    parser.add_argument("--monitor-every", type=int, default=0, help="posterior-collapse monitor every K steps (0 = off)")
    parser.add_argument("--init", choices=["glorot", "pytorch"], default="glorot",
                        help="weight initialisation: glorot (the references' Glorot-uniform, zero biases) or "
                             "pytorch (torch's default)")
    parser.add_argument("--precision", choices=["32", "bf16-mixed"], default="32",
                        help="32 (float32, default) or bf16-mixed: the forward pass in bfloat16 under torch.autocast "
                             "(about 1.4-1.6x faster per step on a CPU with AVX512-BF16; refused where bfloat16 is "
                             "missing); part of the run's config")
    parser.add_argument("--validation-split", type=float, default=0.0, metavar="FRACTION",
                        help="fraction of the dataset held out of training; its ELBO terms are logged as val_* "
                             "(0: no split; the paper holds out 0.1)")
    parser.add_argument("--tensorboard", nargs="?", const="", default=None, metavar="DIR",
                        help="also log every metrics row as TensorBoard scalars, in DIR (default OUT/tensorboard); "
                             "needs pip install 'vaesim[tensorboard]'")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--out", required=True, help="run directory (created; rerun to resume)")
    parser.add_argument("--no-progress", action="store_true",
                        help="hide the progress bar (without a terminal there is none: a plain line every minute)")
    parser.set_defaults(func=run_train)


def _parse_value(text: str):
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def objective_params_from_args(objective: str, param: str | None, assignments: list[str]) -> dict:
    """{name: value} from ``--param`` and ``--set NAME=VALUE``; ValueError lists the valid names."""
    if objective not in OBJECTIVE_NAMES:  # answered before torch is imported
        raise ValueError(f"--objective {objective!r} is unknown; valid objectives: {', '.join(OBJECTIVE_NAMES)}")
    from vaesim.models.objectives import main_param, objective_params

    params: dict = {}
    if param is not None:
        value = _parse_value(param)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ValueError(f"--param {param!r}: expected a number, the value of {main_param(objective)} for "
                             f"{objective} (e.g. --param 4)")
        params[main_param(objective)] = value
    valid = objective_params(objective)
    for item in assignments:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--set {item!r}: expected NAME=VALUE, e.g. --set {valid[0]}=1")
        if name not in valid:
            raise ValueError(f"--set {name}: objective {objective!r} has no parameter {name!r}; valid parameters: {', '.join(valid)}")
        params[name] = _parse_value(value)
    for name, value in params.items():  # the rule a study spec applies to values and fixed parameters
        flag = "--param" if param is not None and name == main_param(objective) else f"--set {name}"
        if isinstance(value, str):
            continue  # a choice (sampling=stratified): the objective checks it
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{flag}: {name}={value} for {objective}; objective parameters are regularisation "
                             "strengths, capacities or step counts and must be finite numbers >= 0 (as in a study "
                             "spec)")
    return params


class _PlainProgress:
    """Progress without a terminal (a log file, CI): one line at most every :data:`LINE_EVERY` seconds, no
    bar frames."""

    def __init__(self, total: int) -> None:
        import time

        self.total, self.loss = total, None
        self.clock = time.monotonic
        self.started = self.last = self.clock()
        self.first: int | None = None

    def log(self, row: dict) -> None:
        self.loss = row.get("loss")

    def step(self, finished: int) -> None:
        now = self.clock()
        if self.first is None:
            self.first = finished - 1
        if now - self.last < LINE_EVERY and finished < self.total:
            return
        self.last = now
        rate = (finished - self.first) / max(now - self.started, 1e-9)
        loss = f", loss {self.loss:.4g}" if self.loss is not None else ""
        print(f"step {finished}/{self.total}{loss}, {rate:.3g} steps/s", file=sys.stderr, flush=True)


def run_train(args) -> int:
    params = objective_params_from_args(args.objective, args.param, args.set)
    from vaesim.training.config import TrainConfig
    from vaesim.training.loop import DONE_FILE, TrainingDiverged, train

    steps = DEFAULT_STEPS if args.steps is None else args.steps
    checkpoints = default_checkpoints(steps) if args.checkpoints is None else args.checkpoints
    config = TrainConfig(
        dataset=args.dataset,
        dataset_root=args.data_root,
        objective=args.objective,
        params=params,
        seed=args.seed,
        steps=steps,
        batch_size=args.batch_size,
        lr=args.lr,
        checkpoints=checkpoints,
        latent_dim=args.latent_dim,
        architecture=args.architecture,
        reconstruction=args.reconstruction,
        log_every=args.log_every,
        monitor_every=args.monitor_every,
        init=args.init,
        validation_split=args.validation_split,
        precision=args.precision,
    )
    already_done = (Path(args.out) / DONE_FILE).is_file()
    from vaesim.training.checkpoint import list_checkpoints

    earlier = [] if already_done or not Path(args.out).is_dir() else list_checkpoints(args.out)
    if args.steps is None and not already_done:
        print(f"vaesim train: --steps not given: training the paper's {DEFAULT_STEPS:,} steps (hours on a CPU); "
              "pass --steps N for a shorter run", file=sys.stderr)
    if earlier:
        print(f"{args.out}: resuming from step {earlier[-1]} of {config.steps}", file=sys.stderr)
    terminal = sys.stderr.isatty()
    lines = _PlainProgress(config.steps) if not terminal and not args.no_progress else None
    try:
        board = None if args.tensorboard is None else (args.tensorboard or Path(args.out) / "tensorboard")
        run_dir = train(config, args.out, progress=terminal and not args.no_progress, device=args.device,
                        callback=lines.step if lines else None, on_log=lines.log if lines else None,
                        tensorboard=board)
    except TrainingDiverged as error:
        print(f"vaesim train: {error}", file=sys.stderr)
        return 1
    print(f"{run_dir}: {'already finished, nothing to do' if already_done else 'finished'} ({config.steps} steps)")
    return 0
