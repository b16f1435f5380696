"""The diffeomorphism sampler of SPEC section 3: its law, its pixel convention, its range."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from bench.measures.diffeo import (DiffeoWarning, deform, exceeds_t_max, fields_from_coefficients,
                                   mode_variances, random_diffeo, sample_coefficients,
                                   sample_fields, t_max, t_min, temperature)


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _variance_map(n: int, cutoff: float, t: float) -> torch.Tensor:
    """Exact per-pixel variance of one field component, from SPEC's formula written out."""
    u = torch.linspace(0, 1, n, dtype=torch.float64)
    var = torch.zeros(n, n, dtype=torch.float64)
    for i in range(1, 10):
        for j in range(1, 10):
            if math.hypot(i, j) < cutoff + 0.5:
                si, sj = torch.sin(i * math.pi * u), torch.sin(j * math.pi * u)
                var += (sj[:, None] ** 2) * (si[None, :] ** 2) / (i * i + j * j)
    return t * n * n * var


# -- temperature range ----------------------------------------------------------------

def test_temperatures_follow_spec_formulas():
    n, c = 32, 3
    assert temperature(1.0, n, c) == pytest.approx(4 / (math.pi * n**2 * math.log(c)), rel=1e-12)
    assert t_min(n, c) == pytest.approx(1 / (math.pi * n**2 * math.log(c)), rel=1e-12)
    assert t_max(c) == pytest.approx(4 / (math.pi**3 * c**2 * math.log(c)), rel=1e-12)
    assert temperature(0.0, n, c) == 0.0


def test_t_max_is_flagged_exactly_above_its_displacement():
    # T(delta) = T_max at delta = n / (pi c): 3.40 px at n = 32, c = 3
    n, c = 32, 3
    limit = n / (math.pi * c)
    assert not exceeds_t_max(0.999 * limit, n, c)
    assert exceeds_t_max(1.001 * limit, n, c)
    assert exceeds_t_max(4.0, n, c) and not exceeds_t_max(1.0, n, c)
    images = torch.rand(2, 3, n, n)
    with pytest.warns(DiffeoWarning, match="T_max"):
        random_diffeo(images, cutoff=c, delta=4.0, generator=_generator())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        random_diffeo(images, cutoff=c, delta=1.0, generator=_generator())


@pytest.mark.parametrize("cutoff", [1, 0.5, -2])
def test_cutoff_must_exceed_one(cutoff):
    with pytest.raises(ValueError, match="cutoff"):
        temperature(1.0, 32, cutoff)


# -- the field ------------------------------------------------------------------------

def test_modes_are_the_disc_with_variance_inverse_square_radius():
    var = mode_variances(3)
    inside = {(i + 1, j + 1) for i, j in zip(*torch.nonzero(var, as_tuple=True))}
    assert {(int(i), int(j)) for i, j in inside} == {(1, 1), (1, 2), (2, 1), (2, 2), (1, 3), (3, 1)}
    assert var[0, 2] == pytest.approx(1 / 10) and var[1, 1] == pytest.approx(1 / 8)


def test_field_vanishes_on_the_border():
    fields = sample_fields(64, 17, 5, temperature(2.0, 17, 5), _generator())
    assert fields.shape == (64, 2, 17, 17)
    assert fields.abs().amax() > 0.5
    for edge in (fields[..., 0, :], fields[..., -1, :], fields[..., :, 0], fields[..., :, -1]):
        assert edge.abs().amax() < 1e-5


def test_calibration_at_n32_c3_delta1():
    """SPEC's check: rms displacement ~1.25 px at the centre, ~0.82 px on average, ~0.9 px per component.

    The exact values from the field's law are 1.27, 0.816 and 0.898 px (at pixel (16, 16)
    of a 32 x 32 grid); SPEC quotes them to about 0.02 px. The empirical values over
    M fields must match the exact ones within 4 standard errors of the sampling.
    """
    n, c, draws = 32, 3, 8000
    t = temperature(1.0, n, c)
    fields = sample_fields(draws, n, c, t, _generator(1)).double()
    exact = _variance_map(n, c, t)
    y = x = n // 2

    exact_one = exact[y, x].sqrt().item()
    exact_both = (2 * exact[y, x]).sqrt().item()
    exact_mean = (2 * exact.mean()).sqrt().item()
    assert exact_one == pytest.approx(0.9, abs=0.01)
    assert exact_both == pytest.approx(1.25, abs=0.025)
    assert exact_mean == pytest.approx(0.82, abs=0.01)

    # one component at the centre: tau^2 / var ~ chi2_1, rel. SE of the mean square sqrt(2/M)
    ms_one = fields[:, 0, y, x].pow(2).mean().item()
    assert ms_one == pytest.approx(exact[y, x].item(), rel=4 * math.sqrt(2 / draws))
    # both components: chi2_2 / 2, rel. SE sqrt(1/M)
    ms_both = fields[:, :, y, x].pow(2).sum(1).mean().item()
    assert ms_both == pytest.approx(2 * exact[y, x].item(), rel=4 * math.sqrt(1 / draws))
    # whole-image average: per-field averages are correlated across pixels, so use their spread
    per_field = fields.pow(2).sum(1).mean((1, 2))
    se = per_field.std().item() / math.sqrt(draws)
    assert per_field.mean().item() == pytest.approx(2 * exact.mean().item(), abs=4 * se)


def test_components_are_independent_and_centred():
    fields = sample_fields(4000, 16, 3, temperature(1.0, 16, 3), _generator(2)).double()
    a, b = fields[:, 0, 8, 8], fields[:, 1, 8, 8]
    corr = ((a * b).mean() / (a.pow(2).mean() * b.pow(2).mean()).sqrt()).item()
    assert abs(corr) < 4 / math.sqrt(4000)
    assert abs(a.mean().item()) < 4 * a.std().item() / math.sqrt(4000)


def test_fields_are_batched_per_item_and_deterministic():
    coeffs = sample_coefficients(5, 3, _generator(3))
    t = temperature(1.0, 24, 3)
    together = fields_from_coefficients(coeffs, 24, t)
    apart = torch.cat([fields_from_coefficients(coeffs[i:i + 1], 24, t) for i in range(5)])
    torch.testing.assert_close(together, apart)
    again = fields_from_coefficients(sample_coefficients(5, 3, _generator(3)), 24, t)
    assert torch.equal(together, again)
    other = fields_from_coefficients(sample_coefficients(5, 3, _generator(4)), 24, t)
    assert not torch.allclose(together, other)


# -- the remap ------------------------------------------------------------------------

def _constant_field(n: int, tau_x: float, tau_y: float) -> torch.Tensor:
    field = torch.zeros(1, 2, n, n)
    field[:, 0], field[:, 1] = tau_x, tau_y
    return field


def test_constant_shift_moves_a_point_by_that_many_pixels():
    # output (y, x) samples input (x - tau_x, y - tau_y): content moves by +tau
    image = torch.zeros(1, 3, 9, 9)
    image[0, :, 3, 4] = 1.0
    moved = deform(image, _constant_field(9, 2.0, -1.0))
    expected = torch.zeros_like(image)
    expected[0, :, 2, 6] = 1.0
    torch.testing.assert_close(moved, expected, atol=1e-6, rtol=0)


def test_half_pixel_shift_interpolates_bilinearly():
    image = torch.zeros(1, 1, 5, 5)
    image[0, 0, 2, 2] = 1.0
    moved = deform(image, _constant_field(5, 0.5, 0.5))[0, 0]
    torch.testing.assert_close(moved[2:4, 2:4], torch.full((2, 2), 0.25), atol=1e-6, rtol=0)
    assert moved.sum().item() == pytest.approx(1.0, abs=1e-6)


def test_remap_is_clamped_at_the_border():
    ramp = torch.arange(8.0).repeat(8, 1)[None, None]  # value = column index
    moved = deform(ramp, _constant_field(8, 3.0, 0.0))[0, 0]
    # columns 0-2 would sample columns -3..-1: clamped to column 0; the rest moves right by 3
    torch.testing.assert_close(moved[:, :3], torch.zeros(8, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(moved[:, 3:], ramp[0, 0, :, :5], atol=1e-5, rtol=0)


def _reference_remap(image: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """SPEC's remap written out pixel by pixel: bilinear at (x - tau_x, y - tau_y), clamped."""
    _, h, w = image.shape
    out = torch.empty_like(image)
    for y in range(h):
        for x in range(w):
            sx = min(max(x - tau[0, y, x].item(), 0.0), w - 1.0)
            sy = min(max(y - tau[1, y, x].item(), 0.0), h - 1.0)
            x0, y0 = math.floor(sx), math.floor(sy)
            x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
            ax, ay = sx - x0, sy - y0
            out[:, y, x] = ((1 - ay) * ((1 - ax) * image[:, y0, x0] + ax * image[:, y0, x1])
                            + ay * ((1 - ax) * image[:, y1, x0] + ax * image[:, y1, x1]))
    return out


def test_batched_remap_matches_a_pixel_by_pixel_remap():
    n = 12
    images = torch.rand(3, 3, n, n, dtype=torch.float64)
    fields = sample_fields(3, n, 3, temperature(3.0, n, 3), _generator(5)).double()
    batched = deform(images, fields)
    for i in range(3):
        torch.testing.assert_close(batched[i], _reference_remap(images[i], fields[i]),
                                   atol=1e-10, rtol=0)


def test_zero_temperature_returns_the_image_unchanged():
    images = torch.rand(4, 3, 16, 16)
    torch.testing.assert_close(random_diffeo(images, delta=0.0, generator=_generator()), images,
                               atol=1e-6, rtol=0)
    fields = sample_fields(4, 16, 3, 0.0, _generator())
    assert torch.equal(fields, torch.zeros_like(fields))


def test_random_diffeo_is_seeded_and_one_field_per_image():
    images = torch.rand(1, 3, 16, 16).repeat(3, 1, 1, 1)
    a = random_diffeo(images, delta=1.5, generator=_generator(7))
    b = random_diffeo(images, delta=1.5, generator=_generator(7))
    assert torch.equal(a, b)
    assert not torch.allclose(a[0], a[1])  # same image, different fields


def test_non_square_images_are_refused():
    with pytest.raises(ValueError, match="square"):
        random_diffeo(torch.rand(1, 3, 16, 20))


@pytest.mark.gpu
def test_sampler_runs_on_cuda_and_matches_cpu():
    coeffs = sample_coefficients(4, 3, _generator(8))
    t = temperature(1.0, 32, 3)
    images = torch.rand(4, 3, 32, 32)
    cpu = deform(images, fields_from_coefficients(coeffs, 32, t))
    gpu = deform(images.cuda(), fields_from_coefficients(coeffs, 32, t, device="cuda"))
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=0)
