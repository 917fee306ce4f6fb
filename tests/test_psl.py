"Cross-checks, bad input and end-to-end runs for aepsl.psl (CPU, random weights, offline, tiny synthetic data)."
import numpy as np, pytest, torch
import torch.nn.functional as F
from aepsl.data import SyntheticWSSS, seg_transforms
from aepsl.models import seg_small, deeplab_largefov
from aepsl.runs import Stage
from aepsl.viz import save_label_png, load_label_png
from aepsl.psl import (online_labels, PSLLoss, SECLoss, SegDataset, gwrp, cam_seeds, fit_seg, predict_stage,
                       evaluate_folder, seg_eval, seg_probs, normalize_image, UNCERTAIN, seg_train_tfms,
                       branch_scores, branch_map, weak_branch, MIN_BRANCH_MAP)


@pytest.fixture(scope='module')
def synth(): return SyntheticWSSS(12, size=48, seed=3)


@pytest.fixture
def pseudo(synth, tmp_path):
    "Pseudo labels = ground truth with a band of uncertain pixels, as palette PNGs."
    d = tmp_path / 'pseudo'
    for i, k in enumerate(synth.ids):
        m = synth.mask(i).copy()
        m[:, :8] = 255
        save_label_png(m, d / f'{k}.png')
    return d


def test_online_labels_prohibit_low_scoring_class():
    f = torch.tensor([0.3, 0.1, 0.6]).log()[None, :, None, None].expand(1, 3, 2, 2)  # class 2 wins the arg-max
    assert (f.argmax(1) == 2).all()
    v = torch.tensor([[2.0, -3.0]])               # σ(-3) = 0.047: class 2 is judged absent
    s = online_labels(f, v)
    assert s.dtype == torch.long and s.shape == (1, 2, 2) and (s == 0).all()
    assert (online_labels(f, torch.tensor([[2.0, 3.0]])) == 2).all()   # present: kept


def test_psl_loss_terms():
    torch.manual_seed(0)
    seg = torch.randn(2, 4, 6, 6, requires_grad=True)
    cls = torch.randn(2, 3, requires_grad=True)
    y = torch.tensor([[1., 0, 1], [0, 1, 0]])
    S = torch.randint(0, 4, (2, 6, 6))
    S[0, :2] = UNCERTAIN
    S[1, -1] = 255                                  # crop padding
    bce = F.binary_cross_entropy_with_logits(cls, y)
    t = S.clone(); t[t == UNCERTAIN] = 255
    ssl = F.cross_entropy(seg, t, ignore_index=255) + bce
    torch.testing.assert_close(PSLLoss(psl=False)((seg, cls), (y, S)), ssl)
    for by, sh in (('labels', online_labels(seg, labels=y)), ('branch', online_labels(seg, cls))):
        sh[S == 255] = 255
        psl = ssl + F.cross_entropy(seg, sh, ignore_index=255)
        torch.testing.assert_close(PSLLoss(prohibit_by=by)((seg, cls), (y, S)), psl)
    assert PSLLoss().prohibit_by == 'labels'   # the default: the image's known labels
    # the online term teaches the uncertain pixels, and nothing reaches the padding
    g = torch.autograd.grad(PSLLoss(cls_weight=0)((seg, cls), (y, S)) - PSLLoss(psl=False, cls_weight=0)((seg, cls), (y, S)), seg)[0]
    assert g[0, :, :2].abs().sum() > 0 and g[1, :, -1].abs().sum() == 0


def _online_target(loss, seg, cls, y):
    "The Ŝ a `PSLLoss` trains on: the arg-max of its online term's gradient target (one-hot, as cross-entropy's)."
    seg = seg.detach().clone().requires_grad_()
    loss.cls_weight = 0
    S = torch.full(seg.shape[:1] + seg.shape[2:], UNCERTAIN)   # all uncertain: only the online term counts
    g, = torch.autograd.grad(loss((seg, cls), (y, S)), seg)
    return (seg.softmax(1) - g * S[0].numel()).argmax(1)     # ∂CE/∂z = p − onehot(Ŝ), per pixel (mean over pixels)


def test_psl_trains_on_the_known_labels_not_a_weak_branch():
    "The 20-class failure: a present class scored 0.41 by the branch loses its pixels to the background in Ŝ (f_c < f_0 / v_c)."
    f = torch.tensor([0.3, 0.6, 0.1]).log()[None, :, None, None].expand(1, 3, 2, 2)   # an object pixel of class 1
    y = torch.tensor([[1., 0.]])                                                       # class 1 present, class 2 absent
    weak = torch.logit(torch.tensor([[0.41, 0.07]]))                                   # the measured weak branch
    assert (online_labels(f, weak) == 0).all()                   # the literal [1, v]: object -> background
    assert (online_labels(f, labels=y) == 1).all()               # the image's labels keep it
    assert (_online_target(PSLLoss(), f, weak, y) == 1).all()    # and the default loss trains on the labels' Ŝ
    assert (_online_target(PSLLoss(prohibit_by='branch'), f, weak, y) == 0).all()
    # an absent class is prohibited by the labels however confident the branch and f are
    f2 = torch.tensor([0.3, 0.1, 0.6]).log()[None, :, None, None].expand(1, 3, 2, 2)
    assert (_online_target(PSLLoss(), f2, torch.tensor([[5., 5.]]), y) == 0).all()
    with pytest.raises(ValueError, match="prohibit_by='cls'"): PSLLoss(prohibit_by='cls')
    with pytest.raises(ValueError, match='exactly one'): online_labels(f)
    with pytest.raises(ValueError, match='exactly one'): online_labels(f, weak, labels=y)


def test_branch_map_and_weak_branch(synth):
    torch.manual_seed(0)
    m = seg_small(5, widths=(8, 8, 16, 16, 16, 16), width=16)
    v = branch_scores(m, synth)
    assert v.shape == (len(synth.ids), 5) and ((v > 0) & (v < 1)).all()
    torch.testing.assert_close(torch.from_numpy(v[3]), seg_probs(m, normalize_image(synth.image(3))[None])[1][0])
    from aepsl.metrics import mean_average_precision
    assert branch_map(m, synth) == mean_average_precision(v, np.asarray(synth.labels))
    # mAP against the labels: a branch that scores each image by its own labels is perfect, the reverse is not
    import aepsl.psl as psl
    orig = psl.branch_scores
    try:
        psl.branch_scores = lambda model, ds, **kw: np.asarray(ds.labels, np.float32)
        assert psl.branch_map(m, synth) == 1.0
        psl.branch_scores = lambda model, ds, **kw: 1 - np.asarray(ds.labels, np.float32)
        assert psl.branch_map(m, synth) < 1.0
    finally: psl.branch_scores = orig
    with pytest.raises(ValueError, match='3-class branch'): branch_map(seg_small(3), synth)
    assert MIN_BRANCH_MAP == 0.8 and weak_branch(0.99) is None and weak_branch(0.8) is None
    w = weak_branch(0.51)
    assert '51.0 %' in w and '80 %' in w and 'rule out classes' in w
    assert weak_branch(0.9, threshold=0.95) is not None and 'nan' in weak_branch(float('nan'))


def test_psl_loss_upsamples_to_label_size():
    "Coarse logits meet full-size labels: bilinear logits (default) or nearest-downsampled labels, never a crash."
    torch.manual_seed(0)
    seg, cls = torch.randn(1, 3, 4, 4), torch.zeros(1, 2)
    S = torch.randint(0, 3, (1, 16, 16))
    loss = PSLLoss(psl=False, cls_weight=0)
    up = F.interpolate(seg, (16, 16), mode='bilinear', align_corners=False)
    torch.testing.assert_close(loss((seg, cls), (torch.zeros(1, 2), S)), F.cross_entropy(up, S))
    down = F.interpolate(S[:, None].float(), (4, 4), mode='nearest')[:, 0].long()
    torch.testing.assert_close(PSLLoss(psl=False, cls_weight=0, upsample=False)((seg, cls), (torch.zeros(1, 2), S)),
                               F.cross_entropy(seg, down))
    assert not torch.isclose(F.cross_entropy(up, S), F.cross_entropy(seg, down))   # the two modes differ here
    all_unc = torch.full((1, 16, 16), UNCERTAIN)
    assert loss((seg, cls), (torch.zeros(1, 2), all_unc)) == 0   # nothing labelled: zero, not NaN


def test_gwrp_between_max_and_mean():
    p = torch.rand(2, 3, 50)
    torch.testing.assert_close(gwrp(p, 0.), p.max(-1).values)
    torch.testing.assert_close(gwrp(p, 1.), p.mean(-1))
    m = gwrp(p, 0.9)
    assert (m <= p.max(-1).values + 1e-6).all() and (m >= p.mean(-1) - 1e-6).all()


def test_sec_loss_seed_term_and_finite():
    torch.manual_seed(0)
    seg = torch.randn(2, 3, 8, 8, requires_grad=True)
    seeds = torch.full((2, 16, 16), 255)
    seeds[0, :4, :4] = 1
    seeds[1, -4:, -4:] = 0
    x = torch.randn(2, 3, 16, 16)
    y = torch.tensor([[1., 0], [0, 1]])
    sec = SECLoss()
    loss = sec((seg, torch.zeros(2, 2)), (y, seeds, x))
    assert torch.isfinite(loss)
    p = seg.softmax(1) + 1e-4; p = p / p.sum(1, keepdim=True)
    want = (-p[0, 1, :2, :2].log().mean() - p[1, 0, -2:, -2:].log().mean()) / 2
    torch.testing.assert_close(sec.last['seed'], want.detach())
    loss.backward()
    assert torch.isfinite(seg.grad).all()


def test_sec_expand_term():
    "Expand: GWRP of present classes and of the background, max of absent ones (SEC's eq. 3), by hand."
    torch.manual_seed(1)
    seg = torch.randn(2, 3, 5, 5)
    y = torch.tensor([[1., 0], [1., 1]])
    sec = SECLoss(crf_iters=1)
    sec((seg, torch.zeros(2, 2)), (y, torch.full((2, 10, 10), 255), torch.zeros(2, 3, 10, 10)))
    p = seg.softmax(1) + 1e-4
    p = (p / p.sum(1, keepdim=True)).flatten(2)
    g, bg = gwrp(p[:, 1:], 0.996), gwrp(p[:, :1], 0.999)[:, 0]
    want = ((-g[0, 0].log() - (1 - p[0, 2].max()).log() - bg[0].log())
            + (-(g[1, 0].log() + g[1, 1].log()) / 2 - bg[1].log())) / 2
    torch.testing.assert_close(sec.last['expand'], want)


def test_sec_constrain_term(monkeypatch):
    "Constrain: KL(Q ‖ p) with Q the CRF of p (SEC's eq. 4), by hand against a fixed Q."
    torch.manual_seed(2)
    seg = torch.randn(1, 2, 6, 6, requires_grad=True)
    q = torch.rand(1, 2, 6, 6)
    q = q / q.sum(1, keepdim=True)
    sec = SECLoss()
    monkeypatch.setattr(sec, '_crf', lambda x, p: q)
    args = ((torch.zeros(1, 1), torch.full((1, 6, 6), 255), torch.zeros(1, 3, 6, 6)),)
    sec((seg, torch.zeros(1, 1)), *args)
    p = seg.softmax(1) + 1e-4
    p = p / p.sum(1, keepdim=True)
    want = (q * (q / p).log()).sum(1).mean()
    torch.testing.assert_close(sec.last['constrain'], want.detach())
    # the real CRF: Q is a distribution of p's shape, floored at min_prob, and the KL is non-negative
    sec = SECLoss()
    x = torch.zeros(1, 3, 41, 41)
    x[..., 20:] = 2.0
    pr = torch.randn(1, 2, 41, 41).softmax(1)
    qq = sec._crf(x, pr)
    assert qq.shape == pr.shape and (qq >= sec.min_prob * 0.99).all()
    torch.testing.assert_close(qq.sum(1), torch.ones(1, 41, 41))
    sec((pr.log(), torch.zeros(1, 1)), (torch.ones(1, 1), torch.full((1, 41, 41), 255), x))
    assert sec.last['constrain'] > 0


def test_cam_seeds():
    c = np.zeros((2, 4, 4), np.float32)
    c[0, 0, 0], c[1, 3, 3], c[0, 1, 1] = 0.9, 0.7, 0.3
    s = cam_seeds(c, fg=0.5, bg=0.1)
    assert s[0, 0] == 1 and s[3, 3] == 2 and s[1, 1] == 255 and s[2, 0] == 0


def test_seg_dataset_reads_disk(synth, pseudo):
    ds = SegDataset(synth, pseudo, tfms=seg_transforms(crop_size=64))
    x, y, m = ds[0]
    assert x.shape == (3, 64, 64) and m.shape == (64, 64) and m.dtype == torch.long
    torch.testing.assert_close(y, torch.as_tensor(synth.labels[0]))
    assert (m == UNCERTAIN).sum() == (load_label_png(pseudo / f'{synth.ids[0]}.png') == 255).sum()   # moved but whole
    assert (m == 255).sum() == 64 * 64 - 48 * 48     # the padding keeps 255
    assert (x[:, m == 255].abs() < 1e-2).all()       # and the image is padded with the mean pixel (0 once normalised)
    gt = SegDataset(synth, None, uncertain=None)
    torch.testing.assert_close(gt[1][2], torch.as_tensor(synth.mask(1)).long())


def test_seg_dataset_bad_input(synth, pseudo):
    (pseudo / f'{synth.ids[3]}.png').unlink()
    with pytest.raises(FileNotFoundError, match=f'{synth.ids[3]}.png'): SegDataset(synth, pseudo)
    save_label_png(np.zeros((20, 30), np.uint8), pseudo / f'{synth.ids[3]}.png')
    ds = SegDataset(synth, pseudo)
    with pytest.raises(ValueError, match='30×20'): ds[3]
    with pytest.raises(FileNotFoundError, match='nope'): SegDataset(synth, pseudo.parent / 'nope')


def test_fit_seg_small_learns(synth, pseudo):
    torch.manual_seed(0)
    m = seg_small(5, widths=(8, 8, 16, 16, 16, 16), width=16)
    ds = SegDataset(synth, pseudo, tfms=seg_train_tfms(dict(crop=40, scale=(0.8, 1.2))))
    h = fit_seg(m, ds, 'psl', epochs=6, bs=4, lr=1e-2, device='cpu', progress=False)
    assert len(h) == 6 and all(np.isfinite(r['train_loss']) for r in h)
    assert h[-1]['train_loss'] < h[0]['train_loss']
    with pytest.raises(ValueError, match='unknown loss'): fit_seg(m, ds, 'nope', epochs=1, device='cpu', progress=False)


def test_fit_seg_sec(synth, pseudo):
    torch.manual_seed(0)
    m = seg_small(5, widths=(8, 8, 16, 16, 16, 16), width=16)
    ds = SegDataset(synth, pseudo, tfms=seg_train_tfms(dict(crop=40)))
    h = fit_seg(m, ds, 'sec', epochs=2, bs=4, lr=1e-2, device='cpu', progress=False)
    assert all(np.isfinite(r['train_loss']) for r in h)


def test_vgg_largefov_trains_on_cpu(synth, pseudo):
    "The paper's network, random weights, tiny crops: SGD steps through the shared loop lower the loss on a fixed batch."
    torch.manual_seed(0)
    m = deeplab_largefov(5, weights=None)
    ds = SegDataset(synth, pseudo, tfms=seg_train_tfms(dict(crop=33, scale=None)))
    sub = torch.utils.data.Subset(ds, range(2))
    x = torch.stack([sub[i][0] for i in range(2)])
    y, S = torch.stack([sub[i][1] for i in range(2)]), torch.stack([sub[i][2] for i in range(2)])
    loss = PSLLoss()
    def batch_loss():
        with torch.no_grad(): return float(loss(m.eval()(x), (y, S)))
    before = batch_loss()
    h = fit_seg(m, sub, 'psl', epochs=4, bs=2, lr=1e-3, device='cpu', progress=False)
    assert len(h) == 4 and all(np.isfinite(r['train_loss']) for r in h)
    assert batch_loss() < before
    with torch.no_grad(): s, c = m.eval()(torch.zeros(1, 3, 33, 33))
    assert s.shape == (1, 6, 5, 5) and c.shape == (1, 5)


class Killer(torch.utils.data.Dataset):
    "Wraps a dataset; raises KeyboardInterrupt on the `at`-th item read (a run killed mid-epoch)."
    def __init__(self, ds, at): self.ds, self.at, self.n = ds, at, 0
    def __len__(self): return len(self.ds)
    def __getitem__(self, i):
        self.n += 1
        if self.at is not None and self.n == self.at: raise KeyboardInterrupt('killed')
        return self.ds[i]


def _train(synth, pseudo, ckpt, kill_at=None, resume=False):
    torch.manual_seed(0)
    m = seg_small(5, widths=(8, 8, 16, 16, 16, 16), width=16)
    ds = Killer(SegDataset(synth, pseudo, tfms=seg_train_tfms(dict(crop=40, scale=(0.7, 1.3)))), kill_at)
    fit_seg(m, ds, 'psl', epochs=3, bs=4, lr=1e-2, seed=1, device='cpu', progress=False, ckpt=ckpt, resume=resume)
    return m


def test_killed_run_resumes_exactly(synth, pseudo, tmp_path):
    ref = _train(synth, pseudo, tmp_path / 'ref.pth')
    with pytest.raises(KeyboardInterrupt): _train(synth, pseudo, tmp_path / 'run.pth', kill_at=12 + 6)  # in epoch 2
    assert (tmp_path / 'run.pth').is_file()
    got = _train(synth, pseudo, tmp_path / 'run.pth', resume=True)
    for (k, a), b in zip(ref.state_dict().items(), got.state_dict().values()):
        assert torch.equal(a, b), f'{k} differs after resuming'


def test_predict_stage_resumes_and_scores(synth, tmp_path):
    torch.manual_seed(0)
    m = seg_small(5, widths=(8, 8, 16, 16, 16, 16), width=16)
    st = Stage(tmp_path / 'pred', dict(model='x'))
    predict_stage(m, synth, st, scales=(1.0, 0.5), flip=True, progress=False)
    assert st.done and sorted(p.stem for p in st.folder.glob('*.png')) == sorted(synth.ids)
    p0 = load_label_png(st.file(synth.ids[0]))
    assert p0.shape == synth.mask(0).shape and p0.max() <= 5
    # resume per image: only the missing file is redone
    st.marker.unlink(); st.file(synth.ids[2]).unlink()
    t = st.file(synth.ids[0]).stat().st_mtime_ns
    predict_stage(m, synth, st, progress=False)
    assert st.file(synth.ids[2]).is_file() and st.file(synth.ids[0]).stat().st_mtime_ns == t
    # scoring agrees with the in-memory evaluation (same scales)
    st2 = Stage(tmp_path / 'pred1', dict(model='x', scales=1))
    predict_stage(m, synth, st2, scales=(1.0,), flip=False, progress=False)
    torch.testing.assert_close(evaluate_folder(synth, st2.folder).cm, seg_eval(m, synth).cm)
    # the ground truth scores 100 %
    gt = tmp_path / 'gt'
    for i, k in enumerate(synth.ids): save_label_png(synth.mask(i), gt / f'{k}.png')
    assert evaluate_folder(synth, gt).miou == 1.0


def test_predict_stage_crf(synth, tmp_path):
    torch.manual_seed(0)
    m = seg_small(5, widths=(8, 8, 16, 16, 16, 16), width=16)
    st = predict_stage(m, synth, Stage(tmp_path / 'crf', dict(crf=True)), scales=(1.0,), flip=False, crf='psa',
                       crf_workers=0, progress=False)
    assert st.record['crf']['bilateral_sxy'] == 80 and len(list(st.folder.glob('*.png'))) == len(synth.ids)
    raw = predict_stage(m, synth, Stage(tmp_path / 'raw', {}), scales=(1.0,), flip=False, progress=False)
    crf, noc = evaluate_folder(synth, st.folder), evaluate_folder(synth, raw.folder)
    assert crf.n_pixels == noc.n_pixels and not torch.equal(crf.cm, noc.cm)   # the CRF changed the predictions


def test_seg_probs_flip_invariant():
    torch.manual_seed(0)
    m = seg_small(3, widths=(8, 8, 16, 16, 16, 16), width=16)
    x = torch.randn(1, 3, 32, 32)
    f, v = seg_probs(m, x, scales=(1.0, 0.5), flip=True)
    f2, v2 = seg_probs(m, x.flip(-1), scales=(1.0, 0.5), flip=True)
    torch.testing.assert_close(f, f2.flip(-1), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(f.sum(1), torch.ones(1, 32, 32))
    assert v.shape == (1, 3)


def test_psl_warmup_follows_scheduler_step():
    net = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(net.parameters(), 0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.)
    loss = PSLLoss(warmup=2.5).track(sched, steps_per_epoch=2)   # 5 steps
    seg, cls, y = torch.randn(1, 3, 4, 4), torch.randn(1, 2), torch.ones(1, 2)
    S = torch.zeros(1, 4, 4, dtype=torch.long)
    torch.testing.assert_close(loss((seg, cls), (y, S)), PSLLoss(psl=False)((seg, cls), (y, S)))   # step 0: no online term
    for _ in range(5): opt.step(); sched.step()
    torch.testing.assert_close(loss((seg, cls), (y, S)), PSLLoss()((seg, cls), (y, S)))            # ramped up: the paper's loss
    sched.load_state_dict({**sched.state_dict(), 'last_epoch': 2})                                  # a resumed run: same ramp
    assert abs(loss.online_weight - 0.4) < 1e-9


def test_evaluate_folder_names_a_prediction_with_an_unknown_label(synth, tmp_path):
    "A predicted label no class has (a foreign or damaged PNG) is refused naming the file, not only the value."
    for i, k in enumerate(synth.ids):
        m = synth.mask(i).copy()
        if i == 2: m[m != 255] = 37
        save_label_png(m, tmp_path / f'{k}.png')
    with pytest.raises(ValueError, match=rf"{synth.ids[2]}\.png holds label 37"): evaluate_folder(synth, tmp_path)
