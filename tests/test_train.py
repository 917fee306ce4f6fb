"The shared loop: checkpoints hold data only, resume is exact (also under the plateau schedule), extends a finished run, files honour the umask; write errors, foreign checkpoints and divergence fail clearly."
import math, os, subprocess, sys, numpy as np, pytest, torch
from pathlib import Path
from aepsl.models import small_cnn
from aepsl.train import fit, fit_classifier, save_checkpoint, load_checkpoint, DivergedError

class Evil:
    def __reduce__(self): return (os.system, (f'touch {Path.cwd()}/PWNED',))

def test_crafted_checkpoint_does_not_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save(dict(model={}, extra=Evil()), tmp_path / 'evil.pt')
    with pytest.raises(ValueError, match='evil.pt'): load_checkpoint(tmp_path / 'evil.pt', small_cnn(5))
    assert not (tmp_path / 'PWNED').exists()

def ds(n=48):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 3, 24, 24, generator=g), (torch.rand(n, 5, generator=g) > 0.5).float()
    return torch.utils.data.TensorDataset(x, y, torch.zeros(n, 24, 24, dtype=torch.long))

class Cut(torch.utils.data.Dataset):
    def __init__(self, ds, at=None): self.ds, self.at, self.n = ds, at, 0
    def __len__(self): return len(self.ds)
    def __getitem__(self, i):
        self.n += 1
        if self.at and self.n == self.at: raise RuntimeError('killed')
        return self.ds[i]

def train(data, ckpt, epochs=3, resume=False):
    torch.manual_seed(0)
    m = small_cnn(5, widths=(8,) * 6)
    fit_classifier(m, data, epochs=epochs, bs=8, seed=2, device='cpu', progress=False, ckpt=ckpt, resume=resume)
    return m

def test_resume_is_exact(tmp_path):
    full = train(Cut(ds()), tmp_path / 'a.pt')
    with pytest.raises(RuntimeError, match='killed'): train(Cut(ds(), at=48 * 2 + 10), tmp_path / 'b.pt')
    resumed = train(Cut(ds()), tmp_path / 'b.pt', resume=True)
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()): assert torch.equal(a, b), k

def test_resume_extends_finished_onecycle_run(tmp_path):
    train(ds(), tmp_path / 'c.pt', epochs=2)
    with pytest.warns(UserWarning, match='recomputed'): train(ds(), tmp_path / 'c.pt', epochs=4, resume=True)
    assert torch.load(tmp_path / 'c.pt', weights_only=True)['extra']['epoch'] == 3

def test_checkpoint_honours_umask(tmp_path):
    old = os.umask(0o027)
    try: p = save_checkpoint(tmp_path / 'm.pt', small_cnn(5))
    finally: os.umask(old)
    assert p.stat().st_mode & 0o777 == 0o640

def test_epochs_checked_before_training():
    with pytest.raises(ValueError, match='epochs must be a positive integer'): fit_classifier(small_cnn(5), ds(), epochs=0)

def test_checkpoint_past_the_file_size_limit_names_the_file(tmp_path):
    code = f"""
import resource, signal, torch
from aepsl.train import save_checkpoint
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
try: save_checkpoint({str(tmp_path / 'model.pt')!r}, torch.nn.Linear(1000, 100))
except OSError as e: print('OSError', e.errno, e)
"""
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert r.stdout.startswith('OSError 27 '), r.stdout + r.stderr
    assert str(tmp_path / 'model.pt') in r.stdout and 'File too large' in r.stdout
    assert list(tmp_path.iterdir()) == []

def test_foreign_checkpoints_name_the_file(tmp_path):
    m = small_cnn(5)
    for name, obj in (('dict.pt', {'a': 1}), ('bare.pt', m.state_dict()), ('list.pt', [1, 2])):
        torch.save(obj, tmp_path / name)
        with pytest.raises(ValueError, match=f'{name} is not an aepsl checkpoint'): load_checkpoint(tmp_path / name, m)
    save_checkpoint(tmp_path / 'other.pt', small_cnn(3))
    with pytest.raises(ValueError, match='other.pt does not fit'): load_checkpoint(tmp_path / 'other.pt', m)

def test_divergence_stops_training_before_its_checkpoint(tmp_path):
    torch.manual_seed(0)
    with pytest.raises(DivergedError, match=r'epoch 0: the valid_loss is nan \(learning rate'):
        fit_classifier(small_cnn(5, widths=(8,) * 6), ds(32), ds(32), epochs=1, bs=32, lr=1e10, device='cpu',
                       progress=False, ckpt=tmp_path / 'c.pt')
    assert list(tmp_path.iterdir()) == []

def test_diverged_epoch_keeps_the_last_good_checkpoint(tmp_path):
    torch.manual_seed(0)
    m = small_cnn(5, widths=(8,) * 6)
    losses = iter([0.5, float('nan')])
    opt = torch.optim.SGD(m.parameters(), lr=0.01)
    dl = torch.utils.data.DataLoader(ds(16), 8)
    with pytest.raises(DivergedError, match='epoch 1: the valid_loss is nan.*c.pt still holds the last good epoch'):
        fit(m, dl, torch.nn.functional.binary_cross_entropy_with_logits, 3, opt, valid_fn=lambda _: dict(valid_loss=next(losses)),
            device='cpu', progress=False, ckpt=tmp_path / 'c.pt')
    assert torch.load(tmp_path / 'c.pt', weights_only=True)['extra']['epoch'] == 0

class Augmented(torch.utils.data.Dataset):
    "`ds()` with a random crop (torch), brightness (NumPy) and noise switch (Python `random`): the generators transforms use."
    def __init__(self): self.ds = ds(24)
    def __len__(self): return len(self.ds)
    def __getitem__(self, i):
        import random
        x, y, m = self.ds[i]
        a, b = torch.randint(0, 5, (2,)).tolist()
        return x[:, a:a + 20, b:b + 20] * float(np.random.uniform(0.8, 1.2)) + random.random(), y, m[a:a + 20, b:b + 20]

def test_results_do_not_depend_on_the_number_of_workers():
    ms = []
    for w in (0, 2):
        torch.manual_seed(0)
        ms.append(small_cnn(5, widths=(8,) * 6))
        fit_classifier(ms[-1], Augmented(), epochs=2, bs=8, seed=3, num_workers=w, device='cpu', progress=False)
    for (k, a), b in zip(ms[0].state_dict().items(), ms[1].state_dict().values()): assert torch.equal(a, b), k

# --- float16 autocast with a gradient scaler (CUDA without bfloat16). On the CPU `amp_dtype` gives no autocast, so the
# tests ask for float16 the way an old GPU would: `fit` must then scale the loss, skip steps whose gradients overflow,
# and carry the loss scale across a resume.
import aepsl.train

def _fp16_fit(tmp_path, epochs, bad_steps=(), resume=False, record=None):
    "fit a small CNN on one fixed batch under float16 autocast; gradients of the steps in `bad_steps` (counted over calls) are made infinite."
    torch.manual_seed(0)
    m = small_cnn(5, widths=(8,) * 6)
    x, y = ds(16).tensors[:2]
    seen = record if record is not None else []
    m.classifier.weight.register_hook(lambda g: (seen.append(1), g + float('inf') if len(seen) in bad_steps else g)[1])
    dtypes = []
    m.classifier.register_forward_hook(lambda mod, i, o: dtypes.append(o.dtype))
    opt = torch.optim.SGD(m.parameters(), lr=0.5, momentum=0.9)
    h = fit(m, [(x, y)], torch.nn.functional.binary_cross_entropy_with_logits, epochs, opt, device='cpu', progress=False,
            ckpt=tmp_path / 'c.pt', resume=resume)
    return m, h, dtypes

def test_fp16_trains_with_a_grad_scaler(tmp_path, monkeypatch):
    monkeypatch.setattr(aepsl.train, 'amp_dtype', lambda device: torch.float16)
    m, h, dtypes = _fp16_fit(tmp_path, 8)
    assert set(dtypes) == {torch.float16}                       # autocast ran in float16
    loss = [r['train_loss'] for r in h]
    assert loss[-1] < loss[0] - 0.1 and all(math.isfinite(l) for l in loss), loss
    sc = torch.load(tmp_path / 'c.pt', weights_only=True)['extra']['scaler']
    assert sc['scale'] == 2.0 ** 16 and sc['_growth_tracker'] == 8   # the scaler's state is in the checkpoint

def test_fp16_step_with_infinite_gradients_is_skipped_and_scale_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr(aepsl.train, 'amp_dtype', lambda device: torch.float16)
    torch.manual_seed(0)
    w0 = dict(small_cnn(5, widths=(8,) * 6).named_parameters())
    m, h, _ = _fp16_fit(tmp_path, 1, bad_steps=(1,))            # the only step overflows: skipped, weights untouched
    for k, p in m.named_parameters(): assert torch.equal(p, w0[k]), k
    assert torch.load(tmp_path / 'c.pt', weights_only=True)['extra']['scaler']['scale'] == 2.0 ** 15   # backed off once
    seen = [1]                                                  # the resumed run's first step is step 2 of the count
    m, h, _ = _fp16_fit(tmp_path, 2, bad_steps=(2,), resume=True, record=seen)
    assert len(h) == 2 and len(seen) == 2
    # the scale the checkpoint held (2^15), halved again: a fresh scaler would be back at 2^16 → 2^15
    assert torch.load(tmp_path / 'c.pt', weights_only=True)['extra']['scaler']['scale'] == 2.0 ** 14

# --- 'plateau': a learning-rate schedule for runs whose length patience decides (issue 15)
from aepsl.train import make_optimizer, seeded_loader, WarmupPlateau
import torch.nn.functional as F

def _plateau_fit(data, ckpt, epochs=3, resume=False, scores=None, **kw):
    "fit a small CNN with sched='plateau'; the held-out score of epoch e is `scores[e]` (constant 0.5 by default)."
    torch.manual_seed(0)
    m = small_cnn(5, widths=(8,) * 6)
    dl = seeded_loader(data, 8, seed=2)
    opt, s = make_optimizer(m, epochs * len(dl), lr=3e-3, sched='plateau', steps_per_epoch=len(dl),
                            **{'warmup_epochs': 1.5, 'lr_patience': 1, **kw})
    seen = []
    def valid(_):
        seen.append(1)
        return dict(mAP=scores[len(seen) - 1] if scores else 0.5)
    if scores and resume: seen.extend([1] * len(torch.load(ckpt, weights_only=True)['extra']['history']))
    h = fit(m, dl, F.binary_cross_entropy_with_logits, epochs, opt, s, valid_fn=valid, device='cpu', progress=False,
            ckpt=ckpt, resume=resume, patience=kw.get('patience'))
    return m, h, s

def test_plateau_resume_is_exact(tmp_path):
    full, hf, sf = _plateau_fit(Cut(ds()), tmp_path / 'a.pt')
    with pytest.raises(RuntimeError, match='killed'): _plateau_fit(Cut(ds(), at=48 * 2 + 10), tmp_path / 'b.pt')
    assert torch.load(tmp_path / 'b.pt', weights_only=True)['sched']['reductions'] == 1   # saved after epoch 1's reduction
    resumed, hr, sr = _plateau_fit(Cut(ds()), tmp_path / 'b.pt', resume=True)
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()): assert torch.equal(a, b), k
    assert [r['lr'] for r in hr] == [r['lr'] for r in hf] and sr.reductions == sf.reductions == 2
    assert [round(r['lr'] / 3e-3, 6) for r in hf] == [round(7 / 9, 6), 1, 0.3]   # 9 warm-up steps, 6 per epoch: 7/9 of the peak after 6

def test_plateau_cap_raised_on_resume_continues_the_schedule(tmp_path, recwarn):
    _plateau_fit(ds(), tmp_path / 'c.pt', epochs=2)
    m, h, s = _plateau_fit(ds(), tmp_path / 'c.pt', epochs=4, resume=True)
    assert len(h) == 4 and s.reductions == 3 and s.last_epoch == 4 * 6      # not recomputed: reductions carried
    assert not [w for w in recwarn if 'recomputed' in str(w.message)]

def test_plateau_lowers_the_rate_before_patience_stops():
    scores = [0.1, 0.2, 0.3, 0.3, 0.3, 0.3, 0.9]   # stalls after epoch 2: reductions at 3 and 4, stop after 5
    m, h, s = _plateau_fit(ds(), None, epochs=20, scores=scores, patience=3)
    assert len(h) == 6 and h[-1]['restored_best_epoch'] == 2 and s.reductions == 3
    assert [round(r['lr'] / 3e-3, 6) for r in h] == [round(7 / 9, 6), 1, 1, 1, 0.3, 0.09]

def test_plateau_refuses_without_a_metric():
    with pytest.raises(ValueError, match='WarmupPlateau schedule .* needs a valid_fn'):
        fit_classifier(small_cnn(5, widths=(8,) * 6), ds(16), epochs=2, bs=8, sched='plateau', device='cpu', progress=False)
    with pytest.raises(ValueError, match="patience=1 must exceed the schedule's lr_patience=1"):
        fit_classifier(small_cnn(5, widths=(8,) * 6), ds(16), ds(16), epochs=2, bs=8, sched='plateau', patience=1,
                       device='cpu', progress=False)
    with pytest.raises(ValueError, match="watches 'valid_mIoU', which valid_fn did not return"):
        fit_classifier(small_cnn(5, widths=(8,) * 6), ds(16), ds(16), epochs=1, bs=8, sched='plateau', monitor='valid_mIoU',
                       device='cpu', progress=False)

def test_fit_classifier_passes_the_plateau_knobs(monkeypatch):
    made = []
    monkeypatch.setattr(WarmupPlateau, 'report', lambda self, v, mode='max': made.append((self, v, mode)) or False)
    h = fit_classifier(small_cnn(5, widths=(8,) * 6), ds(32), ds(16), epochs=2, bs=8, sched='plateau', warmup_epochs=0.5,
                       factor=0.5, lr_patience=2, patience=3, monitor='valid_loss', mode='min', device='cpu', progress=False)
    s = made[0][0]
    assert (s.warmup, s.factor, s.lr_patience) == (2, 0.5, 2)            # 4 steps per epoch: half an epoch is 2 steps
    assert [(v, mode) for _, v, mode in made] == [(r['valid_loss'], 'min') for r in h]

def test_resume_refuses_a_checkpoint_of_another_schedule_kind(tmp_path):
    train(ds(16), tmp_path / 'o.pt', epochs=1)                     # one-cycle
    with pytest.raises(ValueError, match='o.pt was written with another kind of learning-rate schedule'):
        _plateau_fit(ds(16), tmp_path / 'o.pt', epochs=2, resume=True)


def test_watch_from_ignores_the_first_epochs():
    "Epochs before `watch_from` are neither a best epoch nor counted by patience (a loss still ramping in)."
    def run(**kw):
        vals = iter([5., 4., 3., 2., 1., 0., -1., -2.])
        net = torch.nn.Linear(2, 1)
        dl = [(torch.randn(4, 2), torch.randn(4, 1))]
        return fit(net, dl, torch.nn.functional.mse_loss, 8, torch.optim.SGD(net.parameters(), 0.01),
                   valid_fn=lambda m: dict(mAP=next(vals)), patience=2, device='cpu', progress=False, **kw)
    h = run()
    assert len(h) == 3 and h[-1]['restored_best_epoch'] == 0      # the falling metric: best at epoch 0, stopped at 2
    h = run(watch_from=3)
    assert len(h) == 6 and h[-1]['restored_best_epoch'] == 3      # epochs 0-2 unwatched: best 3, stopped at 5
