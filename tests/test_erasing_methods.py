"""The erasing methods AE is compared with, and AE's own fills, checked against what they are defined to do:
ACoL's loss and erasing against a hand computation, Hide-and-Seek's hiding rate and seeding, `erase_regions`' fill modes."""
import math
import numpy as np, pytest, torch
from torch import nn
from aepsl.erasing import ACoL, acol_loss, HideAndSeek, erase_regions

# --- ACoL: a network small enough to compute by hand ------------------------------------------------------------------
# Backbone: the identity on a 1-channel 1×4 input f = [0, 1, 2, 4]. Each head: a 3×3 conv that copies its input
# (centre weight 1), ReLU, and a 1×1 conv giving class 0 the map f and class 1 the map 4 − f.
F0 = [0., 1., 2., 4.]

def hand_acol(delta=0.6):
    m = ACoL(nn.Identity(), n_features=1, n_classes=2, delta=delta)
    with torch.no_grad():
        for head in (m.head_a, m.head_b):
            conv3, _, conv1 = head
            conv3.weight.zero_(); conv3.weight[0, 0, 1, 1] = 1; conv3.bias.zero_()
            conv1.weight.copy_(torch.tensor([1., -1.]).view(2, 1, 1, 1)); conv1.bias.copy_(torch.tensor([0., 4.]))
    return m

def bce(z, t): return math.log1p(math.exp(-z)) if t else math.log1p(math.exp(z))   # BCE with logits, by hand

def mean_maps(f): return sum(f) / 4, sum(4 - v for v in f) / 4                          # (class 0, class 1) logits of a head

@pytest.mark.parametrize('y, erased', [
    ((1., 0.), [0., 1., 2., 0.]),   # class 0's map f normalised: [0, .25, .5, 1] ≥ 0.6 at the last pixel only
    ((0., 1.), [0., 0., 2., 4.]),   # class 1's map 4 − f normalised: [1, .75, .5, 0] ≥ 0.6 at the first two pixels
    ((1., 1.), [0., 0., 2., 0.]),   # both present: the union
])
def test_acol_loss_matches_hand_computation(y, erased):
    "Loss = BCE(head A's mean logits, y) + BCE(head B's mean logits on the features erased where A's map of a labelled class ≥ δ, y)."
    m = hand_acol().train()
    x, yt = torch.tensor(F0).view(1, 1, 1, 4), torch.tensor([y])
    got = acol_loss(m)(m(x), yt).item()
    a, b = mean_maps(F0), mean_maps(erased)
    want = sum(bce(a[c], y[c]) for c in range(2)) / 2 + sum(bce(b[c], y[c]) for c in range(2)) / 2
    assert got == pytest.approx(want, abs=1e-6), (got, want)
    not_erased = 2 * sum(bce(a[c], y[c]) for c in range(2)) / 2
    assert abs(got - not_erased) > 0.05   # head B really saw erased features

def test_acol_heads_see_erased_features():
    "`maps` with labels: B's maps are head B on the features erased by the labelled classes; eval logits erase A's predicted classes."
    m = hand_acol()
    x = torch.tensor(F0).view(1, 1, 1, 4)
    a, b = m.maps(x, torch.tensor([[1., 0.]]))
    assert a[0, :, 0].tolist() == [F0, [4 - v for v in F0]]
    assert b[0, :, 0].tolist() == [[0., 1., 2., 0.], [4., 3., 2., 4.]]
    m.eval()   # no labels: classes with a positive mean logit (both here) are erased: f → [0, 0, 2, 0]
    with torch.no_grad(): out = m(x)
    assert out[0].tolist() == pytest.approx([(1.75 + 0.5) / 2, (2.25 + 3.5) / 2])

@pytest.mark.parametrize('delta, y, erased', [
    (0.6, (0., 1.), [3., 0., 0., 4.]),   # class 1's map 4 − f = [1, 3, 2, 0], normalised [.33, 1, .67, 0]
    (0.9, (0., 1.), [3., 0., 2., 4.]),   # a higher δ erases less
    (0.6, (1., 0.), [0., 1., 2., 0.]),   # class 0's map f normalised [.75, .25, .5, 1]
    (0.9, (1., 0.), [3., 1., 2., 0.]),
])
def test_acol_delta_sets_what_is_erased(delta, y, erased):
    "Head B's input is the features with the pixels where A's normalised map of a labelled class is ≥ δ set to 0."
    _, b = hand_acol(delta).maps(torch.tensor([3., 1., 2., 4.]).view(1, 1, 1, 4), torch.tensor([y]))
    assert b[0, 0, 0].tolist() == erased   # B's class-0 map is its (erased) input

def test_acol_trains_both_heads():
    "One optimiser step on `acol_loss` moves both heads (B gets gradients through the erased features)."
    torch.manual_seed(0)
    m = ACoL(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()), 8, 3).train()
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([[1., 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]])
    loss = acol_loss(m)(m(x), y)
    loss.backward()
    for head in (m.head_a, m.head_b):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())

# --- Hide-and-Seek -----------------------------------------------------------------------------------------------------
def ones(n=200, size=96): return [(torch.ones(3, size, size), torch.tensor([1., 0.]), i) for i in range(n)]

@pytest.mark.parametrize('p', [0.25, 0.75])
def test_hide_and_seek_hides_grid_cells_with_probability_p(p):
    "Grid of 12-px cells on 96-px images: each cell is hidden whole (set to 0, the mean of normalised images) with probability p."
    h = HideAndSeek(ones(), grid_sizes=(1/8,), p=p, seed=0)
    hidden = []
    for i in range(len(h)):
        x, y, k = h[i]
        cells = x.view(3, 8, 12, 8, 12)
        assert set(x.unique().tolist()) <= {0., 1.}
        assert torch.equal(cells.amin((0, 2, 4)), cells.amax((0, 2, 4)))   # every cell all hidden or all kept, all channels alike
        hidden += (cells[0, :, 0, :, 0] == 0).flatten().tolist()
        assert y.tolist() == [1., 0.] and k == i   # the rest of the item passes through
    assert abs(np.mean(hidden) - p) < 0.03, np.mean(hidden)   # 12,800 cells: the standard error is < 0.004

def test_hide_and_seek_grid_sizes_and_seed():
    "Grid size 0 hides nothing; the same seed hides the same cells, another seed other cells."
    assert all(torch.equal(x, torch.ones(3, 32, 32)) for x, *_ in HideAndSeek(ones(20, 32), grid_sizes=(0,), p=0.9))
    draw = lambda seed: torch.stack([HideAndSeek(ones(30, 32), p=0.5, seed=seed)[i][0] for i in range(30)])
    a, b, c = draw(3), draw(3), draw(4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert 0.2 < float((a == 0).float().mean()) < 0.5   # grid size 0 is one of five choices: about 0.5·4/5 hidden

def test_hide_and_seek_partial_cells_at_the_border():
    "A side that the cell does not divide: the last row/column of cells is cut at the border, and the image keeps its size."
    h = HideAndSeek([(torch.ones(3, 50, 50), torch.ones(1))], grid_sizes=(1/7,), p=0.5, seed=1)   # 7-px cells, 8 per side
    x = h[0][0]
    assert x.shape == (3, 50, 50)
    assert torch.equal(x[:, 49:, 49:], x[:, 49:50, 49:50].expand(3, 1, 1))

# --- erase_regions' fills ------------------------------------------------------------------------------------------------
@pytest.fixture
def imgs():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (3, 20, 24, 3), dtype=np.uint8), rng.random((3, 20, 24)) < 0.3

@pytest.mark.parametrize('fill, mean, want', [
    ('zero', None, (0, 0, 0)),
    ((12, 34, 56), None, (12, 34, 56)),
    ('mean', (10.4, 20.6, 200.2), (10, 21, 200)),   # a given mean pixel, rounded
    ('mean', None, None),                            # the mean pixel of the images themselves
])
def test_erase_regions_fills_exactly_the_regions(imgs, fill, mean, want):
    x, r = imgs
    before = x.copy()
    out = erase_regions(x, r, fill=fill, mean=mean)
    if want is None: want = np.round(x.reshape(-1, 3).astype(np.float64).mean(0)).astype(np.uint8)
    assert (out[r] == np.asarray(want, np.uint8)).all()
    assert np.array_equal(out[~r], x[~r])          # everything else untouched
    assert np.array_equal(x, before)               # a copy: the input is not modified
    assert out.dtype == np.uint8 and out.shape == x.shape

def test_erase_regions_noise_is_uniform_and_seeded(imgs):
    x, r = imgs
    x = np.zeros_like(x)
    out = erase_regions(x, r, fill='noise', seed=1)
    v = out[r].astype(float)
    assert np.array_equal(out[~r], x[~r])
    assert abs(v.mean() - 127.5) < 5 and abs(v.std() - 73.9) < 5 and v.min() < 10 and v.max() > 245   # uniform on 0..255
    assert abs(np.corrcoef(v[:, 0], v[:, 1])[0, 1]) < 0.1   # channels drawn independently (not grey)
    assert np.array_equal(erase_regions(x, r, fill='noise', seed=1), out)
    assert not np.array_equal(erase_regions(x, r, fill='noise', seed=2), out)

def test_erase_regions_class_axis_single_image_and_errors(imgs):
    x, r = imgs
    per_class = np.stack([r & (np.arange(24) < 12), r & (np.arange(24) >= 12)], 1)   # N×C×H×W, union = r
    assert np.array_equal(erase_regions(x, per_class, fill='zero'), erase_regions(x, r, fill='zero'))
    assert np.array_equal(erase_regions(x[0], r[0], fill=(1, 2, 3)), erase_regions(x, r, fill=(1, 2, 3))[0])
    with pytest.raises(ValueError, match='do not match'): erase_regions(x, r[:, :10])
    with pytest.raises(ValueError, match='blur'): erase_regions(x, r, fill='blur')
