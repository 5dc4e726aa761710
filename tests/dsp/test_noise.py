import numpy as np
import pytest

from ddsp_device.dsp.noise import NoiseState, noise_basis, noise_block

from reference import noise_ir, noise_reference

SR = 48000


def stream(mag_frames, hop, seed=0, sr=SR, model_sr=SR):
    state = NoiseState(hop, seed, noise_basis(sr, model_sr))
    out = np.empty(len(mag_frames) * hop, np.float32)
    for n, m in enumerate(np.asarray(mag_frames, np.float32)):
        noise_block(m, state, out[n * hop : (n + 1) * hop])
    return out


def white(n_samples, seed=0):
    """The white noise the generator draws, hop by hop (same sequence as NoiseState)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    return rng.random(n_samples, dtype=np.float32) * 2.0 - 1.0


def test_basis_is_the_windowed_shifted_irfft():
    mags = np.random.default_rng(0).random(65)
    assert np.allclose(noise_basis(SR, SR) @ mags, noise_ir(mags), atol=1e-6)


@pytest.mark.parametrize("hop", [32, 128, 192])
def test_matches_overlap_add_reference(hop):
    rng = np.random.default_rng(1)
    frames = rng.random((40, 65)) * 0.1
    ours = stream(frames, hop)
    ref = noise_reference(frames, white(40 * hop), hop)
    assert np.max(np.abs(ours - ref)) < 1e-5


def test_spectral_envelope_follows_magnitudes():
    """A band-limited shape comes out as the filter's response: loud below 6 kHz, quiet above."""
    hop, n = 128, 750
    mags = np.where(np.arange(65) * (SR / 128) < 6000, 1.0, 0.01)
    out = stream(np.tile(mags, (n, 1)), hop).astype(np.float64)
    out = out[: len(out) // 1024 * 1024]
    psd = np.abs(np.fft.rfft(out.reshape(-1, 1024) * np.hanning(1024), axis=1)) ** 2
    psd = psd.mean(axis=0)
    freqs = np.fft.rfftfreq(1024, 1 / SR)
    low = psd[(freqs > 500) & (freqs < 5000)].mean()
    high = psd[(freqs > 9000) & (freqs < 20000)].mean()
    assert 10 * np.log10(low / high) > 30


def test_same_seed_same_noise_other_seed_differs():
    frames = np.full((10, 65), 0.1)
    assert np.array_equal(stream(frames, 128, seed=5), stream(frames, 128, seed=5))
    assert not np.array_equal(stream(frames, 128, seed=5), stream(frames, 128, seed=6))


def test_resampled_bands_at_44k1():
    """At 44.1 kHz the model's 48 kHz bands are resampled in Hz: a flat response stays flat."""
    basis = noise_basis(44100, 48000)
    flat = basis @ np.ones(65)
    assert np.allclose(flat, noise_basis(48000, 48000) @ np.ones(65), atol=1e-6)
    # a magnitude step at 12 kHz lands at the same frequency in Hz
    mags = np.where(np.arange(65) * 48000 / 128 < 12000, 1.0, 0.0)
    resp = np.abs(np.fft.rfft(basis @ mags, n=4096))
    freqs = np.fft.rfftfreq(4096, 1 / 44100)
    half = freqs[np.argmin(np.abs(resp - 0.5))]
    assert abs(half - 12000) < 600
