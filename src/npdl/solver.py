"""``Solver``: the course's training loop with schedules, early stopping, callbacks,
a divergence guard and resumable state."""

from __future__ import annotations

import inspect
import math
import time
import warnings
from collections.abc import Callable, Iterable
from difflib import get_close_matches

import numpy as np

from .averaging import ExponentialMovingAverage
from .diagnosis import Diagnosis, diagnose
from .losses import CrossEntropyFromLogits, Loss
from .optimizers import OPTIMIZERS, Adam, Optimizer
from .schedules import LearningRateSchedule

#: Metrics that may decide the best epoch; loss is minimised, accuracy maximised.
MONITORS = ("val_loss", "val_acc")

#: Why a call to :meth:`Solver.train` ended.
STATUSES = ("completed", "early_stopped", "stopped", "diverged")


def refuse_unknown_keywords(model, keywords: dict) -> None:
    """Refuse the keys of ``Solver(**kwargs)`` that the model's class does not name
    either: ``TypeError`` naming them and the closest known names. The course feeds one
    config to both; a model class outside npdl that takes ``**kwargs`` may use any key,
    so for it this only warns."""
    model_params = inspect.signature(type(model).__init__).parameters
    named = {n for n, p in model_params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    unknown = sorted(set(keywords) - named)
    if not unknown:
        return
    known = sorted((named | set(inspect.signature(Solver).parameters)) - {"self", "kwargs"})
    hints = [
        f"{key!r} (did you mean {close[0]!r}?)"
        if (close := get_close_matches(key, known, 1))
        else repr(key)
        for key in unknown
    ]
    message = (
        f"Solver got unknown keyword argument(s) {', '.join(hints)}: neither Solver nor "
        f"{type(model).__name__} takes them (optimizer options go in optimizer_kwargs="
        "{'weight_decay': ...})"
    )
    takes_any = any(p.kind is p.VAR_KEYWORD for p in model_params.values())
    if takes_any and not type(model).__module__.startswith("npdl."):
        warnings.warn(
            message + f"; passed on, as {type(model).__name__} takes **kwargs", stacklevel=3
        )
        return
    raise TypeError(message)


class Solver:
    """Trains a model with minibatch gradient descent (course API).

    Parameters
    ----------
    model : ClassificationNet (or any object with forward/backward/params/grads)
    train_dataloader, val_dataloader : iterables of {'image': (N, ...), 'label': (N,)}
        ``val_dataloader`` may be None: nothing is validated (the val columns of the
        history are NaN), no epoch is selected and the last epoch's weights are kept.
    loss_func : Loss or Loss class
        A class (e.g. ``CrossEntropyFromLogits``) is instantiated, so a search space
        may list classes as the course's does.
    learning_rate : float
        Peak learning rate.
    optimizer : Optimizer class or name ('adam', 'sgd', 'sgd_momentum')
    verbose : bool
        Print one line every ``print_every`` epochs, and the diagnosis
        (:meth:`diagnose`) when ``train`` ends.
    print_every : int
    lr_decay : float
        Per-epoch multiplicative decay of the ``constant`` schedule (course API).
    optimizer_kwargs : dict, optional
        Extra optimizer arguments (``weight_decay``, ``momentum``, ``beta1``, ...).
    schedule : {'constant', 'step', 'cosine'}
    warmup_epochs, step_size, gamma, min_lr
        See :class:`~npdl.schedules.LearningRateSchedule`.
    schedule_epochs : int, optional
        Horizon of the cosine schedule; defaults to the epochs of each ``train`` call
        (plus those already run).
    monitor : {'val_loss', 'val_acc'}
        Metric deciding the best epoch for early stopping and weight restoring.
    restore_best : bool
        Restore the best epoch's weights when training ends (course behaviour).
    callbacks : iterable of callables ``f(solver, stats) -> bool``
        Called after every epoch with that epoch's stats dict; a truthy return value
        stops training (status ``stopped``).
    ema : float, optional
        Keep an exponential moving average of the weights with this decay per step
        (:class:`~npdl.averaging.ExponentialMovingAverage`, e.g. 0.999). Validation
        and the best epoch's weights are then the average's, and after ``train`` the
        model holds the averaged weights (the best epoch's, with ``restore_best``);
        a further ``train`` call continues from the raw weights where it stopped.
    **kwargs
        Keys the model's class takes as named parameters (``reg``, ``hidden_size``,
        ...), so one search config can feed both model and Solver (course API); any
        other key is refused with a ``TypeError`` naming it (a misspelt
        ``optimizer_kwargs`` entry would otherwise be lost silently). A model class of
        one's own that takes ``**kwargs`` gets a warning instead.

    Attributes
    ----------
    train_loss_history, val_loss_history, train_acc_history, val_acc_history,
    lr_history : list of float, one entry per epoch
    train_batch_loss : list of float, one entry per training step
    val_batch_loss : list of float, one entry per validation batch (as the course: the
        batch's mean loss plus the model's L2 term)
    num_operation : int
        Multiply-adds counted as the course's Solver does: the model's
        ``num_operation`` after each forward pass, and again for each backward pass.
    status : str, one of :data:`STATUSES` after ``train``
    """

    def __init__(
        self,
        model,
        train_dataloader,
        val_dataloader,
        loss_func: Loss = CrossEntropyFromLogits(),  # noqa: B008 - course signature; stateless
        learning_rate: float = 1e-3,
        optimizer=Adam,
        verbose: bool = True,
        print_every: int = 1,
        lr_decay: float = 1.0,
        optimizer_kwargs: dict | None = None,
        schedule: str = "constant",
        warmup_epochs: float = 0.0,
        step_size: int = 10,
        gamma: float = 0.1,
        min_lr: float = 0.0,
        schedule_epochs: int | None = None,
        monitor: str = "val_loss",
        restore_best: bool = True,
        callbacks: Iterable[Callable] = (),
        ema: float | None = None,
        **kwargs,
    ):
        refuse_unknown_keywords(model, kwargs)
        if isinstance(optimizer, str):
            if optimizer not in OPTIMIZERS:
                raise ValueError(
                    f"unknown optimizer {optimizer!r}; allowed: {', '.join(sorted(OPTIMIZERS))}"
                )
            optimizer = OPTIMIZERS[optimizer]
        if isinstance(loss_func, type):
            loss_func = loss_func()
        if monitor not in MONITORS:
            raise ValueError(f"monitor must be one of {sorted(MONITORS)}, got {monitor!r}")
        self.model = model
        self.train_dataloader = train_dataloader
        self.val_dataloader = val_dataloader
        self.loss_func = loss_func
        self.learning_rate = float(learning_rate)
        self.lr_decay = float(lr_decay)
        self.opt: Optimizer = optimizer(model, loss_func, learning_rate, **(optimizer_kwargs or {}))
        self.verbose = verbose
        self.print_every = max(int(print_every), 1)
        self.schedule_options = {
            "kind": schedule,
            "warmup_epochs": float(warmup_epochs),
            "lr_decay": self.lr_decay,
            "step_size": int(step_size),
            "gamma": float(gamma),
            "min_lr": float(min_lr),
        }
        # Validate the schedule options now rather than at the first step.
        LearningRateSchedule(self.learning_rate, **self.schedule_options)
        self.schedule_epochs = schedule_epochs
        self.monitor = monitor
        self.restore_best = restore_best
        self.callbacks = list(callbacks)
        self.averaging = ExponentialMovingAverage(model, ema) if ema else None
        self._raw_weights: dict | None = None  # the model's own, while it holds the average
        self._reset()

    def _reset(self) -> None:
        """Clear histories and bookkeeping (course API)."""
        self.epoch = 0
        self.global_step = 0
        self.best_model_stats: dict | None = None
        self.best_params: dict | None = None
        self.best_epoch: int | None = None
        self.current_patience = 0
        self.status: str | None = None
        self.train_loss_history: list[float] = []
        self.val_loss_history: list[float] = []
        self.train_acc_history: list[float] = []
        self.val_acc_history: list[float] = []
        self.lr_history: list[float] = []
        self.epoch_seconds: list[float] = []
        self.train_batch_loss: list[float] = []
        self.val_batch_loss: list[float] = []
        self.num_operation = 0

    # -- training -------------------------------------------------------------------
    def _schedule(self, total_epochs: int) -> LearningRateSchedule:
        return LearningRateSchedule(
            self.learning_rate,
            steps_per_epoch=len(self.train_dataloader),
            total_epochs=self.schedule_epochs or total_epochs,
            **self.schedule_options,
        )

    def _train_epoch(self, schedule: LearningRateSchedule) -> tuple[float, float, bool]:
        """One pass over the training data: (mean loss, accuracy, diverged)."""
        model, total_loss, correct, seen = self.model, 0.0, 0, 0
        model.train()
        for batch in self.train_dataloader:
            labels = np.asarray(batch["label"])
            self.opt.lr = schedule(self.global_step)
            logits = model.forward(batch["image"])
            loss, dlogits = self.loss_func(logits, labels)
            loss += sum(getattr(model, "reg", {}).values())
            if not math.isfinite(loss):
                self.train_batch_loss.append(loss)
                return math.nan, math.nan, True
            model.backward(dlogits)
            self.num_operation += 2 * getattr(model, "num_operation", 0)
            self.opt.step()
            if self.averaging is not None:
                self.averaging.update()
            self.global_step += 1
            self.train_batch_loss.append(loss)
            total_loss += loss * len(labels)
            correct += int(np.count_nonzero(logits.argmax(axis=1) == labels))
            seen += len(labels)
        if seen == 0:
            raise ValueError("the training loader yielded no samples (too few for one batch?)")
        return total_loss / seen, correct / seen, False

    def evaluate(self, loader, batch_losses: list | None = None) -> tuple[float, float]:
        """Mean data loss (without the L2 term) and accuracy on a loader, in eval mode;
        each batch's mean loss plus the L2 term is appended to ``batch_losses``."""
        model = self.model
        was_training = getattr(model, "training", False)
        model.eval()
        total_loss, correct, seen = 0.0, 0, 0
        try:
            for batch in loader:
                labels = np.asarray(batch["label"])
                logits = model.forward(batch["image"])
                self.num_operation += getattr(model, "num_operation", 0)
                batch_loss = self.loss_func.forward(logits, labels, reduction="sum")
                total_loss += batch_loss
                if batch_losses is not None:
                    regularisation = sum(getattr(model, "reg", {}).values())
                    batch_losses.append(batch_loss / len(labels) + regularisation)
                correct += int(np.count_nonzero(logits.argmax(axis=1) == labels))
                seen += len(labels)
        finally:
            model.train(was_training)
        if seen == 0:
            raise ValueError("the loader yielded no samples")
        return total_loss / seen, correct / seen

    def get_dataset_accuracy(self, loader) -> float:
        """Accuracy of the model on a loader (course API)."""
        return self.evaluate(loader)[1]

    def train(self, epochs: int = 100, patience: int | None = None) -> str:
        """Train for ``epochs`` more epochs.

        Parameters
        ----------
        epochs : int
        patience : int, optional
            Stop after this many epochs without improvement of ``monitor``.

        Returns
        -------
        str
            The status, also kept in ``self.status``: ``completed``, ``early_stopped``,
            ``stopped`` (a callback asked) or ``diverged`` (loss became NaN/inf; the
            best weights so far are restored and training does not go on).
        """
        if patience is not None and self.val_dataloader is None:
            raise ValueError("patience needs a val_dataloader to watch; got None")
        if self._raw_weights is not None:  # the model holds the average: go on from its own
            self.model.load_state_dict(self._raw_weights)
            self._raw_weights = None
        schedule = self._schedule(self.epoch + epochs)
        self.status = "completed"
        if patience is not None and self.current_patience >= patience:
            epochs = 0  # resumed from a state that had already run out of patience
            self.status = "early_stopped"
        for _ in range(epochs):
            start = time.perf_counter()
            lr = schedule(self.global_step)
            # A diverging run overflows everywhere: the divergence guard reports it once
            # instead of NumPy warning on every operation.
            with np.errstate(over="ignore", invalid="ignore"):
                train_loss, train_acc, diverged = self._train_epoch(schedule)
            if diverged:
                self.status = "diverged"
                self._log(f"(Epoch {self.epoch + 1}) loss is not finite: training diverged")
                break
            val_loss, val_acc = self._validate()
            self.epoch += 1
            self.train_loss_history.append(train_loss)
            self.train_acc_history.append(train_acc)
            self.val_loss_history.append(val_loss)
            self.val_acc_history.append(val_acc)
            self.lr_history.append(lr)
            self.epoch_seconds.append(time.perf_counter() - start)
            validated = self.val_dataloader is not None
            improved = validated and self._update_best(val_loss, val_acc, train_loss)
            if self.verbose and (self.epoch % self.print_every == 0 or self.epoch == 1):
                self._log(
                    f"(Epoch {self.epoch}) train loss: {train_loss:.5f} acc: {train_acc:.4f}; "
                    + (f"val loss: {val_loss:.5f} acc: {val_acc:.4f}; " if validated else "")
                    + f"lr {lr:.2e}"
                    + (" *" if improved else "")
                )
            stats = self.history[-1]
            if any([bool(callback(self, stats)) for callback in self.callbacks]):
                self.status = "stopped"
                break
            if patience is not None and self.current_patience >= patience:
                self.status = "early_stopped"
                self._log(f"Stopping early: no improvement of {self.monitor} for {patience} epochs")
                break
        self._hand_over()
        if self.verbose and (diagnosis := self.diagnose()) is not None:
            self._log(f"Diagnosis: {diagnosis}")
        return self.status

    def diagnose(self, **thresholds) -> Diagnosis | None:
        """The verdict on the training so far: overfitting, underfitting, diverged or ok,
        with its evidence and the course's advice (:func:`npdl.diagnosis.diagnose` of
        :attr:`history` and :attr:`status`; ``thresholds`` are its keyword arguments).
        None before the first epoch."""
        if not self.train_loss_history and self.status != "diverged":
            return None
        classes = getattr(self.model, "num_classes", 10)
        return diagnose(self.history, self.status, num_classes=classes, **thresholds)

    def _validate(self) -> tuple[float, float]:
        """Val loss and accuracy of the weights that would be kept (the average's, with
        ``ema``); NaN without a val loader."""
        if self.val_dataloader is None:
            return math.nan, math.nan
        if self.averaging is None:
            return self.evaluate(self.val_dataloader, self.val_batch_loss)
        with self.averaging.swapped_in():
            return self.evaluate(self.val_dataloader, self.val_batch_loss)

    def _kept_weights(self) -> dict[str, np.ndarray]:
        """A copy of the weights an epoch would be kept with: averaged, or the model's."""
        return self.model.state_dict() if self.averaging is None else self.averaging.weights()

    def _hand_over(self) -> None:
        """End of ``train``: the model takes the best epoch's weights (``restore_best``)
        or, with weight averaging, the average; its own are kept to go on from."""
        best = self.best_params if self.restore_best else None
        if best is None and self.averaging is None:
            return
        if self.averaging is not None:
            self._raw_weights = self.model.state_dict()
        self.model.load_state_dict(best if best is not None else self.averaging.weights())

    def _update_best(self, val_loss: float, val_acc: float, train_loss: float) -> bool:
        value = val_loss if self.monitor == "val_loss" else val_acc
        best = None if self.best_model_stats is None else self.best_model_stats[self.monitor]
        if best is None or (value < best if self.monitor == "val_loss" else value > best):
            self.best_model_stats = {
                "val_loss": val_loss,
                "val_acc": val_acc,
                "train_loss": train_loss,
                "epoch": self.epoch,
            }
            self.best_params = self._kept_weights()
            self.best_epoch = self.epoch
            self.current_patience = 0
            return True
        self.current_patience += 1
        return False

    def _log(self, message: str) -> None:
        if self.verbose:
            print(message, flush=True)

    @property
    def history(self) -> list[dict]:
        """One dict per epoch: epoch, train/val loss and accuracy, lr, seconds."""
        return [
            {
                "epoch": i + 1,
                "train_loss": self.train_loss_history[i],
                "train_acc": self.train_acc_history[i],
                "val_loss": self.val_loss_history[i],
                "val_acc": self.val_acc_history[i],
                "lr": self.lr_history[i],
                "seconds": self.epoch_seconds[i],
            }
            for i in range(len(self.train_loss_history))
        ]

    # -- checkpoints ------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything needed to resume: weights, optimizer state, position, histories,
        best weights. A flat dict of arrays (for :func:`npdl.io.save_npz`). Buffers that
        training never changes (``model.fixed_buffers``: the input projection) are left
        out; the model a checkpoint is loaded into has them."""
        fixed = getattr(self.model, "fixed_buffers", ())
        weights = self._raw_weights or self.model.state_dict()
        state = {f"model/{k}": v for k, v in weights.items() if k not in fixed}
        state.update({f"optimizer/{k}": v for k, v in self.opt.state_dict().items()})
        if self.averaging is not None:
            state.update({f"ema/{k}": v for k, v in self.averaging.state_dict().items()})
        if self.best_params is not None:
            # The best epoch is usually the current one: then its weights are the
            # model's (or the average's), and storing them twice would double the
            # checkpoint.
            if self.best_epoch != self.epoch:
                best = self.best_params.items()
                state.update({f"best/{k}": v for k, v in best if k not in fixed})
            state["best_stats"] = np.array(
                [self.best_model_stats[k] for k in ("val_loss", "val_acc", "train_loss", "epoch")]
            )
        state["position"] = np.array([self.epoch, self.global_step, self.current_patience])
        state["history"] = np.array(
            [
                self.train_loss_history,
                self.train_acc_history,
                self.val_loss_history,
                self.val_acc_history,
                self.lr_history,
                self.epoch_seconds,
            ],
            dtype=np.float64,
        ).reshape(6, -1)
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Resume from :meth:`state_dict`."""

        own = self.model.state_dict()
        fixed = {k: own[k] for k in getattr(self.model, "fixed_buffers", ())}

        def section(prefix: str) -> dict[str, np.ndarray]:
            return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}

        def weights(prefix: str) -> dict[str, np.ndarray]:
            found = section(prefix)
            return {**fixed, **found} if found else {}

        self._reset()
        self._raw_weights = None
        self.model.load_state_dict(weights("model/"))
        self.opt.load_state_dict(section("optimizer/"))
        if self.averaging is not None:
            self.averaging.load_state_dict(section("ema/"))
        best = weights("best/")
        if "best_stats" in state:
            self.best_params = best or self._kept_weights()
            val_loss, val_acc, train_loss, epoch = state["best_stats"].tolist()
            self.best_model_stats = {
                "val_loss": val_loss,
                "val_acc": val_acc,
                "train_loss": train_loss,
                "epoch": int(epoch),
            }
            self.best_epoch = int(epoch)
        self.epoch, self.global_step, self.current_patience = (int(x) for x in state["position"])
        rows = [list(map(float, row)) for row in state["history"]]
        (
            self.train_loss_history,
            self.train_acc_history,
            self.val_loss_history,
            self.val_acc_history,
            self.lr_history,
            self.epoch_seconds,
        ) = rows
