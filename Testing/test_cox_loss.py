"""The Cox partial-likelihood loss: R's coxph log-likelihood and score on the Rossi data, risk sets with
censored ties, Efron's tie correction, invariances and numerical stability."""

import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from HEROVisionLib.errors import InputError
from HEROVisionLib.train.losses import cox_partial_likelihood_loss

R_FIXTURES = Path(__file__).parent / "fixtures" / "r"
ROSSI = pd.read_csv(R_FIXTURES / "rossi.csv")
TIME = torch.tensor(ROSSI["week"].to_numpy(), dtype=torch.float64)
EVENT = torch.tensor(ROSSI["arrest"].to_numpy(), dtype=torch.bool)


def _rossi_linear_predictor(ties: str) -> torch.Tensor:
    """β·x (uncentred) of R's coxph fit on Rossi with this tie method."""
    coefficients = pd.read_csv(R_FIXTURES / "cox_coefficients.csv").query("ties == @ties")
    return torch.tensor(ROSSI[list(coefficients["term"])].to_numpy() @ coefficients["coef"].to_numpy())


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_loss_is_minus_r_coxph_log_likelihood_on_rossi(ties):
    """R: coxph(Surv(week, arrest) ~ fin + age + race + wexp + mar + paro + prio, ties = ...) loglik
    (efron −658.7477, breslow −659.1206)."""
    log_likelihood = pd.read_csv(R_FIXTURES / "cox_loglik.csv").set_index("ties").loc[ties, "loglik"]
    risk = _rossi_linear_predictor(ties)
    total = cox_partial_likelihood_loss(risk, TIME, EVENT, ties=ties, reduction="sum")
    assert total.item() == pytest.approx(-log_likelihood, rel=1e-10)
    mean = cox_partial_likelihood_loss(risk, TIME, EVENT, ties=ties)
    assert mean.item() == pytest.approx(-log_likelihood / EVENT.sum().item(), rel=1e-10)


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_loss_at_zero_scores_is_minus_r_null_log_likelihood(ties):
    null_log_likelihood = pd.read_csv(R_FIXTURES / "cox_loglik.csv").set_index("ties").loc[ties, "loglik_null"]
    total = cox_partial_likelihood_loss(torch.zeros(len(TIME), dtype=torch.float64), TIME, EVENT, ties, "sum")
    assert total.item() == pytest.approx(-null_log_likelihood, rel=1e-10)


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_gradient_is_minus_r_martingale_residuals(ties):
    """d log PL / d risk_i is subject i's martingale residual (R residuals(fit, type = "martingale"))."""
    residuals = torch.tensor(pd.read_csv(R_FIXTURES / "cox_martingale_residuals.csv")[ties].to_numpy())
    risk = _rossi_linear_predictor(ties).requires_grad_()
    cox_partial_likelihood_loss(risk, TIME, EVENT, ties=ties, reduction="sum").backward()
    torch.testing.assert_close(risk.grad, -residuals, rtol=0, atol=1e-9)


def test_censored_subject_tied_with_an_event_is_in_its_risk_set():
    """Subjects: event at t = 1, censored at t = 1, event at t = 2. By hand:
    log PL = a − log(eᵃ + eᵇ + eᶜ) + c − log(eᶜ)."""
    risk = torch.tensor([0.3, 1.1, -0.4], dtype=torch.float64)
    time = torch.tensor([1.0, 1.0, 2.0])
    event = torch.tensor([1, 0, 1])
    a, b, c = risk.tolist()
    expected = -(a - math.log(math.exp(a) + math.exp(b) + math.exp(c)))
    for ties in ("efron", "breslow"):
        assert cox_partial_likelihood_loss(risk, time, event, ties, "sum").item() == pytest.approx(expected, rel=1e-12)


def test_tied_events_follow_breslow_and_efron_formulas():
    """Two events tied at t = 1 and one subject censored at t = 2. With S = eᵃ + eᵇ + eᶜ:
    Breslow log PL = a + b − 2·log S; Efron log PL = a + b − log S − log(S − (eᵃ + eᵇ)/2)."""
    risk = torch.tensor([0.3, 1.1, -0.4], dtype=torch.float64)
    time, event = torch.tensor([1.0, 1.0, 2.0]), torch.tensor([1, 1, 0])
    a, b, c = risk.tolist()
    total = math.exp(a) + math.exp(b) + math.exp(c)
    breslow = -(a + b - 2 * math.log(total))
    efron = -(a + b - math.log(total) - math.log(total - (math.exp(a) + math.exp(b)) / 2))
    assert cox_partial_likelihood_loss(risk, time, event, "breslow", "sum").item() == pytest.approx(breslow, rel=1e-12)
    assert cox_partial_likelihood_loss(risk, time, event, "efron", "sum").item() == pytest.approx(efron, rel=1e-12)


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_order_of_subjects_does_not_matter(ties):
    risk = _rossi_linear_predictor(ties).requires_grad_()
    permutation = torch.randperm(len(risk), generator=torch.Generator().manual_seed(3))
    permuted = risk.detach()[permutation].clone().requires_grad_()
    loss = cox_partial_likelihood_loss(risk, TIME, EVENT, ties)
    permuted_loss = cox_partial_likelihood_loss(permuted, TIME[permutation], EVENT[permutation], ties)
    loss.backward()
    permuted_loss.backward()
    assert permuted_loss.item() == pytest.approx(loss.item(), rel=1e-12)
    torch.testing.assert_close(permuted.grad, risk.grad[permutation], rtol=0, atol=1e-12)


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_adding_a_constant_to_every_score_changes_nothing(ties):
    risk = _rossi_linear_predictor(ties)
    loss = cox_partial_likelihood_loss(risk, TIME, EVENT, ties)
    assert cox_partial_likelihood_loss(risk + 7.5, TIME, EVENT, ties).item() == pytest.approx(loss.item(), rel=1e-12)


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_scores_of_order_1e4_give_finite_loss_and_gradient(ties):
    """Scores 1e4 apart (float32) must not overflow; the loss is that of the same scores shifted to near 0."""
    spread = _rossi_linear_predictor(ties) * 1e4 / 3
    risk = (spread + 1e4).float().requires_grad_()
    loss = cox_partial_likelihood_loss(risk, TIME, EVENT, ties)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(risk.grad).all()
    reference = cox_partial_likelihood_loss(spread, TIME, EVENT, ties)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-4)


def test_no_event_gives_zero_with_a_gradient_path():
    risk = torch.randn(5, requires_grad=True)
    loss = cox_partial_likelihood_loss(risk, torch.arange(5.0), torch.zeros(5))
    loss.backward()
    assert loss.item() == 0 and torch.equal(risk.grad, torch.zeros(5))


def test_bad_arguments_are_named():
    risk, time, event = torch.zeros(4), torch.arange(4.0), torch.ones(4)
    with pytest.raises(InputError, match="time"):
        cox_partial_likelihood_loss(risk, time[:3], event)
    with pytest.raises(InputError, match="risk"):
        cox_partial_likelihood_loss(risk[:, None], time, event)
    with pytest.raises(InputError, match="ties"):
        cox_partial_likelihood_loss(risk, time, event, ties="exact")
    with pytest.raises(InputError, match="reduction"):
        cox_partial_likelihood_loss(risk, time, event, reduction="none")
