"""The fidelity controller: eliminations that do not act on noise.

A scheduler with rungs eliminates on short runs' scores. Two things make such a score a
poor guide, and :class:`FidelityControl` answers each by keeping more configurations
instead of eliminating them:

- **Ties within the noise.** Scores that differ by less than their standard error
  (a val accuracy ``p`` on ``n`` images: ``sqrt(p (1 - p) / n)``) are not ranked by
  that difference: every configuration within ``tie_sd`` standard errors of the last
  one promoted is promoted too.
- **Rungs that disagree.** When a rung's ranking of the configurations it shares with
  the rung before agrees poorly with it (Spearman below ``min_agreement``), the earlier
  rung's ranking was mostly noise; the next promotion keeps ``widen`` times as many.

Every such decision is recorded (rung, how many more were kept, why) for the log and
the reports.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .fidelity import spearman

#: ``standard_error(score) -> float``: the standard error of one trial's score.
StandardError = Callable[[float], float]


def accuracy_standard_error(val_images: int) -> StandardError:
    """The binomial standard error of a val accuracy on ``val_images`` images."""

    def standard_error(accuracy: float) -> float:
        p = min(max(accuracy, 0.0), 1.0)
        return math.sqrt(p * (1 - p) / val_images)

    return standard_error


@dataclass(frozen=True)
class FidelityControl:
    """How a scheduler with rungs guards its eliminations (see the module docstring).

    Attributes
    ----------
    standard_error : callable or None
        ``standard_error(score)`` of one score; None: no ties are kept (a loss, whose
        noise is not known from the score alone).
    tie_sd : float
        Width of a tie, in standard errors.
    min_agreement : float or None
        Spearman correlation between consecutive rungs below which the next promotion
        keeps ``widen`` times as many; None: not checked.
    widen : int
        How many times as many configurations a disagreeing rung keeps.
    """

    standard_error: StandardError | None = None
    tie_sd: float = 1.0
    min_agreement: float | None = 0.5
    widen: int = 2

    def promotions(
        self,
        ranking: Sequence[int],
        score_of: Mapping[int, float | None],
        n_next: int,
        previous: Mapping[int, float | None] | None,
        rung: int,
    ) -> tuple[list[int], list[dict]]:
        """The point indices to promote from a rung, best first, and the decisions.

        ``ranking`` holds the rung's successful points best first; ``n_next`` is how
        many the schedule promotes; ``previous`` the scores of the rung before (None
        at the first rung).
        """
        promoted = list(ranking[:n_next])
        decisions = []
        agreement = self.agreement(ranking, score_of, previous)
        disagree = (
            agreement is not None
            and self.min_agreement is not None
            and agreement < self.min_agreement
        )
        if disagree and len(ranking) > len(promoted):
            wider = list(ranking[: self.widen * n_next])
            decisions.append(
                {
                    "rung": rung,
                    "kept": len(wider) - len(promoted),
                    "why": f"rank agreement with the rung before {agreement:.2f} < "
                    f"{self.min_agreement:g}",
                }
            )
            promoted = wider
        if self.standard_error is not None and promoted and len(ranking) > len(promoted):
            cutoff = score_of[promoted[-1]]
            width = self.tie_sd * self.standard_error(cutoff)
            tied = [i for i in ranking[len(promoted) :] if score_of[i] >= cutoff - width]
            if tied:
                decisions.append(
                    {
                        "rung": rung,
                        "kept": len(tied),
                        "why": f"within {width:.4f} ({self.tie_sd:g} standard error) of the "
                        f"last promoted score {cutoff:.4f}",
                    }
                )
                promoted += tied
        return promoted, decisions

    @staticmethod
    def agreement(
        ranking: Sequence[int],
        score_of: Mapping[int, float | None],
        previous: Mapping[int, float | None] | None,
    ) -> float | None:
        """Spearman correlation between this rung's and the previous rung's scores of
        the points both scored (None with fewer than 3, or at the first rung)."""
        if not previous:
            return None
        common = [i for i in ranking if previous.get(i) is not None]
        if len(common) < 3:
            return None
        return spearman([previous[i] for i in common], [score_of[i] for i in common])
