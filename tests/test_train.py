"The shared loop: checkpoints hold data only, resume is exact, extends a finished run, files honour the umask."
import os, subprocess, sys, numpy as np, pytest, torch
from pathlib import Path
from aepsl.models import small_cnn
from aepsl.train import fit_classifier, save_checkpoint, load_checkpoint

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
