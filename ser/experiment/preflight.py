"""A composed config checked before the heavy imports: a mistake is one paragraph in seconds.

``train.py`` calls :func:`check_config` before it imports Lightning, which alone takes 6 s of
a start on two cores. The checks are the ones the objects that own the keys run when they
are built (the DataModule's options, the corpus, the front end, the optimiser), called
early; what this module adds is only what those objects learn later (a network argument
that does not exist, a precision or accelerator the Trainer would refuse). Nothing here
imports Lightning; torch is imported only once the torch-free checks have passed.
"""

from __future__ import annotations

import inspect

from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from ser.data.options import check_data_options
from ser.errors import ConfigError, find_user_error, not_one_of

# lightning.fabric.connector._PRECISION_INPUT of Lightning 2.6, which the Trainer accepts
# (tests/test_config.py holds the two equal, so a Lightning upgrade cannot leave this behind).
PRECISIONS = (64, 32, 16, "64", "32", "16", "bf16", "16-true", "16-mixed", "bf16-true", "bf16-mixed",
              "32-true", "64-true", "transformer-engine", "transformer-engine-float16")
GPU_ACCELERATORS = ("gpu", "cuda")
TEST_CHECKPOINTS = ("last", "best")  # test_ckpt


def check_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` (or the corpus's MissingCorpus) for a mistake in ``cfg``."""
    for data in [cfg.data, *cfg.get("test_corpora", {}).values()]:  # and every corpus of test_on
        check_data_options(**OmegaConf.to_container(data, resolve=True))
        corpus = made("data", lambda d=data: instantiate(d.corpus))
        corpus.check_available(data.get("root"))
        if data.get("split") == "protocol":
            corpus.check_protocol(data.get("fold", 0))
    if cfg.get("test_ckpt", "last") not in TEST_CHECKPOINTS:
        raise not_one_of("test_ckpt", cfg.test_ckpt, TEST_CHECKPOINTS)
    if cfg.trainer.get("use_distributed_sampler", False):
        raise ConfigError("trainer.use_distributed_sampler=true is not supported: ser's data module shards its "
                          "loaders across processes itself (length buckets, class balance, no training batch "
                          "of one, each test clip scored once), and Lightning's sampler would replace that "
                          "order with a plain shuffle. Leave it at false.")
    if cfg.trainer.get("precision", "32-true") not in PRECISIONS:
        raise not_one_of("trainer.precision", cfg.trainer.precision, PRECISIONS)
    check_model(cfg.model, accelerator=cfg.trainer.get("accelerator", "auto"))


def check_model(model: DictConfig, accelerator: str) -> None:
    """The model's parts that can be checked without building the LightningModule."""
    import torch  # 2 s; Lightning stays unimported

    from ser.optim import check_compile, check_optimisation

    has_gpu = torch.cuda.is_available() or torch.backends.mps.is_available()
    if accelerator in GPU_ACCELERATORS and not has_gpu:
        raise ConfigError(f"trainer.accelerator={accelerator} asks for a GPU, but torch sees none on this "
                          "machine (torch.cuda.is_available() is False); use trainer=cpu, or "
                          "trainer.accelerator=auto to take a GPU where there is one.")
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not has_gpu)
    check_compile(model.get("compile", False), "cpu" if on_cpu else "accelerator")
    made("features", lambda: preflight_frontend(model.frontend))
    check_net_arguments(model.net, given=(*frontend_class(model.frontend).injects, *TASK_INJECTS))
    # Last: a valid optimiser's first construction imports torch._dynamo (1 s).
    check_optimisation(OmegaConf.to_container(model.optimizer, resolve=True),
                       OmegaConf.to_container(model.scheduler, resolve=True) if model.get("scheduler") else None)


TASK_INJECTS = ("num_classes",)  # the network argument the task sizes (its output size)


def frontend_class(frontend: DictConfig) -> type:
    return made("features", lambda: get_class(frontend._target_))


def preflight_frontend(frontend: DictConfig) -> None:
    """Build the front end, or where building it is work (a pretrained encoder's weights),
    run only the checks its class offers as ``preflight``."""
    cls = frontend_class(frontend)
    check = getattr(cls, "preflight", None)
    if check is None:
        instantiate(frontend)
        return
    check(**{k: v for k, v in OmegaConf.to_container(frontend, resolve=True).items() if k != "_target_"})


def check_net_arguments(net: DictConfig, given: tuple[str, ...]) -> None:
    """Every ``model.net`` key must be an argument of the network class (a typo would
    otherwise only surface when the LightningModule builds it); ``given``: the arguments the
    front end and the task pass, which a user does not set."""
    cls = made("model", lambda: get_class(net._target_))
    params = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = [key for key in net if key != "_target_" and key not in params]
    if unknown:
        takes = [name for name in params if name not in given]
        raise ConfigError(f"model.net.{unknown[0]} is not an argument of {net._target_}; "
                          f"it takes: {', '.join(takes)}.")


def made(group: str, make, refused: tuple[type[Exception], ...] = ()):
    """``make()``, with a mistake in the ``group`` config turned into a :class:`ConfigError`:
    an unknown key (TypeError), a target that does not exist (ImportError), or a value the
    class refuses (ValueError, or one of ``refused``)."""
    try:
        return make()
    except Exception as err:
        if find_user_error(err) is not None:
            raise
        cause = err
        while cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, (TypeError, ImportError, ValueError, *refused)):
            raise ConfigError(f"the {group} config does not work: {type(cause).__name__}: {cause}") from err
        raise
