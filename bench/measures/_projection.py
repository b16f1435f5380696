"""A seeded random projection of wide layers that never holds a projection matrix.

Manifold analysis projects layers wider than 5000 features to 5000 dimensions
(SPEC section 6). A dense Gaussian matrix for a 200k-wide stage output would be 4 GB,
and regenerating it block by block for every batch of images would cost more than the
network. A subsampled randomized Fourier transform (SRFT) gives the same guarantee
(inner products preserved in expectation, Johnson-Lindenstrauss concentration) with
O(N) memory and O(N log N) work per image:

    y = sqrt(N / k) * [Re F(d * x), Im F(d * x)] at k random frequencies,

with random signs d, the orthonormal real FFT F, and k = out / 2 frequencies drawn
without replacement strictly between 0 and N / 2 (where both parts carry
information). The random signs make E[y(x) . y(x')] = x . x' exactly; the Fourier
transform spreads every input coordinate over all outputs, so sparse (ReLU)
features are embedded as well as dense ones.
"""

from __future__ import annotations

import numpy as np
import torch


class RandomProjection:
    """x (B, n_in) -> (B, n_out), the same map for every batch; seeded by (seed, stream)."""

    def __init__(self, n_in: int, n_out: int, seed: int, stream: int = 0,
                 device: torch.device | str = "cpu"):
        n_freq = (n_in - 1) // 2                      # frequencies 1 .. ceil(n_in / 2) - 1
        k = (n_out + 1) // 2
        if k > n_freq:
            raise ValueError(f"cannot project {n_in} features to {n_out}: need n_in > n_out + 1")
        state = np.random.SeedSequence([seed, stream, 0x5EF7]).generate_state(1)[0]
        generator = torch.Generator().manual_seed(int(state))
        self.signs = (torch.randint(0, 2, (n_in,), generator=generator) * 2 - 1).float().to(device)
        self.freqs = (torch.randperm(n_freq, generator=generator)[:k] + 1).to(device)
        self.n_in, self.n_out = n_in, n_out
        self.scale = (n_in / k) ** 0.5

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        spectrum = torch.fft.rfft(x.float() * self.signs, norm="ortho")[:, self.freqs]
        return self.scale * torch.cat([spectrum.real, spectrum.imag], -1)[:, : self.n_out]
