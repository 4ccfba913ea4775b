"""The Cox partial-likelihood loss that trains the survival head, in torch.

The network's output is a log-hazard ratio (risk score); only its order against each event's risk
set matters, so the loss is the negative Cox partial log-likelihood. It is written once here and
checked against R's ``coxph``: the same coefficients must give the same log-likelihood.

* Risk sets: subject j is at risk at event time t_i iff time_j ≥ t_i, so a subject censored at
  an event time still counts in that risk set (the usual convention of R and lifelines).
* Ties: ``"breslow"`` uses the full risk set for every tied event; ``"efron"`` (R's default)
  removes, for the l-th of d tied events, the fraction l/d of the tied events' hazard.
* Stability: risk-set sums are cumulative log-sum-exps (max-shifted inside torch), and the Efron
  correction is ``log1p`` of a ratio ≤ 1, so scores of order 1e4 give finite losses and gradients.

Inputs are not checked for NaN: that would force a device synchronisation at every step, and a NaN
score gives a NaN loss anyway.
"""

from __future__ import annotations

import torch

from ..errors import InputError

TIES = ("efron", "breslow")
REDUCTIONS = ("mean", "sum")


def cox_partial_likelihood_loss(risk: torch.Tensor, time: torch.Tensor, event: torch.Tensor, ties: str = "efron",
                                reduction: str = "mean") -> torch.Tensor:
    """Negative Cox partial log-likelihood of the scores ``risk`` (N,) for survival ``time`` (N,) and ``event`` (N,).

    ``reduction="sum"`` gives −log PL itself; ``"mean"`` divides it by the number of events, so the
    scale of the loss does not depend on the batch size. Without any event the loss is 0, still
    attached to ``risk`` so that a backward pass works.
    """
    _check_arguments(risk, time, event, ties, reduction)
    event = event.to(torch.bool)
    n_events = int(event.sum())
    if n_events == 0:
        return risk.sum() * 0

    order = torch.argsort(time, descending=True, stable=True)
    risk_sorted, event_sorted = risk[order], event[order]
    _, group, group_sizes = torch.unique_consecutive(time[order], return_inverse=True, return_counts=True)
    # Descending time: a tie group's risk set is everyone up to and including the group's last member.
    group_last = torch.cumsum(group_sizes, 0) - 1
    log_risk_set = torch.logcumsumexp(risk_sorted, 0)[group_last]

    event_risk = risk_sorted[event_sorted]
    event_group = group[event_sorted]
    log_denominator = log_risk_set[event_group]
    if ties == "efron":
        log_denominator = log_denominator + _efron_correction(event_risk, event_group, log_risk_set, len(group_sizes))

    negative_log_likelihood = (log_denominator - event_risk).sum()
    return negative_log_likelihood / n_events if reduction == "mean" else negative_log_likelihood


def _efron_correction(event_risk: torch.Tensor, event_group: torch.Tensor, log_risk_set: torch.Tensor,
                      n_groups: int) -> torch.Tensor:
    """log(1 − (l/d)·Σ_tied exp(r) / Σ_risk-set exp(r)) for the l-th (0-based) of the d events of each tie group.

    ``event_group`` is non-decreasing (events are in sorted order), so an event's rank within its
    group is its position minus the position of the group's first event.
    """
    events_in_group = torch.zeros(n_groups, dtype=torch.long, device=event_risk.device)
    events_in_group.index_add_(0, event_group, torch.ones_like(event_group))
    first_event_of_group = torch.cumsum(events_in_group, 0) - events_in_group
    rank = torch.arange(len(event_group), device=event_risk.device) - first_event_of_group[event_group]
    fraction = rank.to(event_risk.dtype) / events_in_group[event_group].to(event_risk.dtype)

    group_max = torch.full((n_groups,), -torch.inf, dtype=event_risk.dtype, device=event_risk.device)
    group_max = group_max.scatter_reduce(0, event_group, event_risk.detach(), reduce="amax")
    shifted_sum = torch.zeros(n_groups, dtype=event_risk.dtype, device=event_risk.device)
    shifted_sum = shifted_sum.index_add(0, event_group, torch.exp(event_risk - group_max[event_group]))
    log_tied = torch.log(shifted_sum[event_group]) + group_max[event_group]
    tied_share = torch.exp(log_tied - log_risk_set[event_group])
    return torch.log1p(-fraction * tied_share)


def _check_arguments(risk, time, event, ties, reduction) -> None:
    if ties not in TIES:
        raise InputError("ties", f"must be one of {', '.join(TIES)}, not {ties!r}")
    if reduction not in REDUCTIONS:
        raise InputError("reduction", f"must be one of {', '.join(REDUCTIONS)}, not {reduction!r}")
    if risk.dim() != 1:
        raise InputError("risk", f"must be one score per subject (shape (N,)), got shape {tuple(risk.shape)}")
    for name, values in (("time", time), ("event", event)):
        if values.shape != risk.shape:
            raise InputError(name, f"has shape {tuple(values.shape)}, the risk scores {tuple(risk.shape)}")
