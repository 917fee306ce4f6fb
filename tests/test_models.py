"Shape, stride, weight-loading and training-loop checks for aepsl.models / aepsl.train (CPU, random weights, offline)."
import math, urllib.error, warnings
import pytest, torch, torchvision
from torch.utils.data import TensorDataset
from aepsl.models import (small_cnn, vgg16_largefov, resnet50_cam, output_stride, receptive_field, local_weights, load_weights,
                          CAMClassifier, SegNet, deeplab_largefov, resnet_largefov, seg_small)
from aepsl.train import fit_classifier, save_checkpoint, load_checkpoint, default_device, fit


def test_small_cnn_shapes():
    m = small_cnn(5)
    assert m(torch.randn(2, 3, 96, 96)).shape == (2, 5)
    assert m.features(torch.randn(2, 3, 96, 96)).shape == (2, 128, 24, 24)
    assert output_stride(m) == 4 and receptive_field(m) == 29
    assert small_cnn(3, widths=(8, 8, 16, 16, 32, 32)).classifier.in_features == 32


@pytest.mark.parametrize('size', [64, 65, 97])
def test_vgg16_largefov_stride(size):
    m = vgg16_largefov(20, weights=None).eval()
    with torch.no_grad(): f = m.features(torch.zeros(1, 3, size, size))
    assert f.shape == (1, 1024, math.ceil(size / 8), math.ceil(size / 8))
    assert m(torch.zeros(1, 3, size, size)).shape == (1, 20)
    assert vgg16_largefov(20, weights=None, conv6_dilation=12).features[31].dilation == (12, 12)


def test_vgg16_loads_torchvision_weights(tmp_path):
    src = torchvision.models.vgg16(weights=None)
    torch.save(src.state_dict(), tmp_path / 'vgg16.pth')
    m = vgg16_largefov(20, weights=tmp_path / 'vgg16.pth')
    convs = [l for l in m.features if isinstance(l, torch.nn.Conv2d)]
    tv = [l for l in src.features if isinstance(l, torch.nn.Conv2d)]
    for a, b in zip(convs[:13], tv): assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    old, new = m.param_groups()
    assert len(old) == 26 and len(new) == 6


@pytest.mark.parametrize('os_', [16, 8])
def test_resnet50_output_stride(os_):
    m = resnet50_cam(20, weights=None, output_stride=os_).eval()
    assert output_stride(m, 64) == os_
    assert m(torch.zeros(2, 3, 64, 64)).shape == (2, 20)
    assert m.get_submodule('features.layer4') is not None


def test_offline_weights_error_names_file_and_url(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path))
    def offline(*a, **k): raise urllib.error.URLError('no network')
    monkeypatch.setattr(torch.hub, 'load_state_dict_from_url', offline)
    w = torchvision.models.ResNet50_Weights.IMAGENET1K_V2
    with pytest.raises(RuntimeError) as e: resnet50_cam(3)
    assert str(tmp_path / 'checkpoints' / w.url.split('/')[-1]) in str(e.value) and w.url in str(e.value)
    with pytest.raises(RuntimeError, match='vgg16-397923af.pth'): vgg16_largefov(3)
    with pytest.raises(RuntimeError, match='vgg16-397923af.pth'): deeplab_largefov(3)
    with pytest.raises(FileNotFoundError, match='torch hub cache'): load_weights(w, download=False)
    with pytest.warns(UserWarning, match='RANDOM'): assert local_weights(w) is None


def test_weights_fetched_once_into_hub_cache(monkeypatch, tmp_path):
    "First use downloads through torch.hub (mocked: writes the file), later uses read the cache."
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path))
    sd = torchvision.models.resnet18(weights=None).state_dict()
    calls = []
    def fake_download(url, map_location=None, progress=True, weights_only=False, **k):
        calls.append(url)
        assert weights_only
        f = tmp_path / 'checkpoints' / url.split('/')[-1]
        f.parent.mkdir(exist_ok=True)
        torch.save(sd, f)
        return torch.load(f, weights_only=True)
    monkeypatch.setattr(torch.hub, 'load_state_dict_from_url', fake_download)
    m1 = resnet50_cam(3, arch='resnet18', output_stride=32)
    m2 = resnet50_cam(3, arch='resnet18', output_stride=32)
    assert len(calls) == 1
    assert torch.equal(m1.features.conv1.weight, sd['conv1.weight']) and torch.equal(m2.features.conv1.weight, sd['conv1.weight'])


def test_local_weights_from_hub_cache(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path))
    w = torchvision.models.ResNet50_Weights.IMAGENET1K_V2
    (tmp_path / 'checkpoints').mkdir()
    sd = torchvision.models.resnet50(weights=None).state_dict()
    torch.save(sd, tmp_path / 'checkpoints' / w.url.split('/')[-1])
    m = resnet50_cam(3)   # no warning: found in the cache
    assert torch.equal(m.features.conv1.weight, sd['conv1.weight'])


def _toy(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, 3, generator=g) > 0.5).float()
    x = torch.randn(n, 3, 16, 16, generator=g) + y[:, :, None, None]
    return TensorDataset(x, y)


def test_checkpoint_roundtrip(tmp_path):
    m = small_cnn(3, widths=(8,) * 6)
    fit_classifier(m, _toy(), epochs=1, bs=8, device='cpu', progress=False)
    m.eval(); save_checkpoint(tmp_path / 'c.pth', m, note='x')
    m2 = small_cnn(3, widths=(8,) * 6).eval()
    assert load_checkpoint(tmp_path / 'c.pth', m2) == {'note': 'x'}
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad(): assert torch.equal(m(x), m2(x))
    assert [p.name for p in tmp_path.iterdir()] == ['c.pth']


def test_nan_loss_raises():
    ds = TensorDataset(torch.randn(8, 3, 16, 16), torch.full((8, 3), float('nan')))
    with pytest.raises(FloatingPointError, match='epoch 0, step 0'):
        fit_classifier(small_cnn(3, widths=(8,) * 6), ds, epochs=1, bs=4, device='cpu', progress=False)


def test_deterministic_and_history():
    hs, ws = [], []
    for _ in range(2):
        torch.manual_seed(0); m = small_cnn(3, widths=(8,) * 6)
        hs.append(fit_classifier(m, _toy(), _toy(16, 1), epochs=2, bs=8, seed=5, device='cpu', progress=False))
        ws.append(m.classifier.weight.detach().clone())
    assert torch.equal(ws[0], ws[1])
    assert [h['train_loss'] for h in hs[0]] == [h['train_loss'] for h in hs[1]]
    assert len(hs[0]) == 2 and {'train_loss', 'valid_loss', 'mAP', 'epoch'} <= set(hs[0][0])


def test_default_device():
    assert default_device().type in ('cuda', 'mps', 'cpu')


# --- segmentation networks ---

@pytest.mark.parametrize('size', [33, 64, 65])
def test_deeplab_largefov_shapes(size):
    m = deeplab_largefov(20, weights=None, width=64).eval()
    with torch.no_grad(): s, c = m(torch.zeros(1, 3, size, size))
    assert s.shape == (1, 21, math.ceil(size / 8), math.ceil(size / 8)) and c.shape == (1, 20)
    fc6 = [l for l in m.features if isinstance(l, torch.nn.Conv2d)][13]
    assert fc6.dilation == (12, 12) and fc6.kernel_size == (3, 3)
    assert isinstance(m, SegNet) and isinstance(m, CAMClassifier)


def test_deeplab_decimates_vgg_fc(tmp_path):
    src = torchvision.models.vgg16(weights=None)
    torch.save(src.state_dict(), tmp_path / 'vgg16.pth')
    m = deeplab_largefov(20, weights=tmp_path / 'vgg16.pth')
    convs = [l for l in m.features if isinstance(l, torch.nn.Conv2d)]
    for a, b in zip(convs[:13], [l for l in src.features if isinstance(l, torch.nn.Conv2d)]): assert torch.equal(a.weight, b.weight)
    fc6 = src.classifier[0].weight.view(4096, 512, 7, 7)
    assert torch.equal(convs[13].weight, fc6[::4, :, ::3, ::3])
    assert torch.equal(convs[14].weight[:, :, 0, 0], src.classifier[3].weight[::4, ::4])
    old, new = m.param_groups()
    assert len(old) == 30 and len(new) == 4            # fc8 and the classification branch are the only new layers
    assert {id(p) for p in new} == {id(p) for p in [*m.seg.parameters(), *m.classifier.parameters()]}
    old, new = deeplab_largefov(20, weights=None).param_groups()
    assert len(old) == 26 and len(new) == 8            # without ImageNet weights fc6/fc7 are new too


def test_resnet_largefov_and_small():
    m = resnet_largefov(5, weights=None, arch='resnet50').eval()
    with torch.no_grad(): s, c = m(torch.zeros(2, 3, 64, 64))
    assert s.shape == (2, 6, 8, 8) and c.shape == (2, 5) and output_stride(m, 64) == 8
    sm = seg_small(5)
    with torch.no_grad(): s, c = sm.eval()(torch.zeros(2, 3, 96, 96))
    assert s.shape == (2, 6, 24, 24) and c.shape == (2, 5)
    assert output_stride(sm) == 4 and receptive_field(sm) == 53
    assert sm.recipe['sched'] == 'poly'
    old, new = sm.param_groups()
    assert len(old) + len(new) == len([p for p in sm.parameters()]) and len(new) >= 4
