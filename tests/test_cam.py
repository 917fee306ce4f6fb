"CAM / Grad-CAM agreement, and our Grad-CAM against the pytorch_grad_cam library (CPU, random weights)."
import numpy as np, pytest, torch, torchvision
import torch.nn.functional as F
from aepsl.models import small_cnn
from aepsl.cam import cam_from_fc, raw_cam, multiscale_cam, cams_to_label_map, ThresholdSweep, normalize_cams
from aepsl.gradcam import grad_cam


def _maxnorm(m):  # B×h×w: ReLU, divide by per-map max
    m = F.relu(torch.as_tensor(m).float())
    return m / (m.flatten(1).amax(-1)[:, None, None] + 1e-5)


def test_cam_equals_gradcam_for_gap_linear():
    torch.manual_seed(0)
    m = small_cnn(4).eval()
    # make the BN statistics non-trivial so the check is not on an almost-linear net
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.normal_(0, .1); mod.running_var.uniform_(.5, 2)
    x = torch.randn(3, 3, 40, 40)
    y = torch.tensor([[1, 0, 1, 0], [0, 1, 1, 1], [1, 1, 1, 1]])
    torch.testing.assert_close(grad_cam(m, x, 'features', y), cam_from_fc(m, x, y), atol=1e-5, rtol=1e-4)
    # before normalisation they differ by exactly 1/Z
    gc = grad_cam(m, x, 'features', upsample=False, normalize=False)
    with torch.no_grad(): torch.testing.assert_close(gc * 100, raw_cam(m, x), atol=1e-4, rtol=1e-4)


def test_cam_is_logit_decomposition():
    torch.manual_seed(0)
    m = small_cnn(4).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad(): torch.testing.assert_close(raw_cam(m, x).mean((2, 3)) + m.classifier.bias, m(x), atol=1e-4, rtol=1e-4)


def test_cam_contract():
    torch.manual_seed(0)
    m = small_cnn(4)
    x = torch.randn(2, 3, 32, 32); y = torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0]])
    for c in (cam_from_fc(m, x, y), multiscale_cam(m, x, y, scales=(1, .5), flip=True)):
        assert c.dtype == torch.float32 and c.shape == (2, 4, 32, 32) and c.min() >= 0
        mx = c.flatten(2).amax(-1)
        assert (mx[y == 0] == 0).all() and (((mx[y == 1] - 1).abs() < 1e-4) | (mx[y == 1] == 0)).all()
    assert m.training  # mode restored
    lm = cams_to_label_map(cam_from_fc(m, x, y), 0.3)
    assert lm.dtype == np.uint8 and lm.shape == (2, 32, 32) and set(np.unique(lm[1])) <= {0, 2}


def test_threshold_sweep_matches_single_metric():
    from aepsl.metrics import SegMetric
    g = torch.Generator().manual_seed(0)
    cams = normalize_cams(torch.rand(4, 3, 10, 10, generator=g), torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 1], [0, 0, 1]]))
    masks = torch.randint(0, 4, (4, 10, 10), generator=g); masks[:, 0] = 255
    sw = ThresholdSweep(3, [0.2, 0.6]).update(cams[:2], masks[:2]).update(cams[2:], masks[2:])
    for t, v in zip([0.2, 0.6], sw.mious):
        ref = SegMetric(4).update(torch.as_tensor(cams_to_label_map(cams, t)).long(), masks)
        assert abs(ref.miou - v) < 1e-12


@pytest.fixture(scope='module')
def resnet18():
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval()


def test_gradcam_matches_pytorch_grad_cam(resnet18):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    model = resnet18
    torch.manual_seed(1)
    x = torch.randn(3, 3, 96, 96)
    targets = {0: [1, 7, 42], 1: [7, 500], 2: [3, 1, 999, 42]}   # several classes per image, shared and not
    labels = torch.zeros(3, 1000)
    for i, cs in targets.items(): labels[i, cs] = 1
    ours_raw = grad_cam(model, x, 'layer4', labels, upsample=False, normalize=False)   # B×C×3×3
    ours_up = grad_cam(model, x, 'layer4', labels)                                      # B×C×96×96, normalised
    n_checked = 0
    for c in sorted({c for cs in targets.values() for c in cs}):
        # the library silently drops images without a target, so: one target (class c) per image per call
        with GradCAM(model=model, target_layers=[model.layer4]) as lib:
            out = lib(input_tensor=x, targets=[ClassifierOutputTarget(c)] * len(x))
            acts = lib.activations_and_grads.activations[0].numpy()
            grads = lib.activations_and_grads.gradients[0].numpy()
            raw = lib.get_cam_image(x, model.layer4, None, acts, grads)            # B×h×w, before ReLU
        for i in (i for i, cs in targets.items() if c in cs):
            torch.testing.assert_close(ours_raw[i, c], torch.as_tensor(raw[i]).float(), atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(_maxnorm(ours_raw[i, c][None])[0], _maxnorm(raw[i][None])[0], atol=1e-5, rtol=1e-4)
            # Its final output is min-max scaled per image *after* upsampling (min > 0 there when the single zero of
            # the ReLU'd map falls between pixel centres); ours is ReLU, bilinear, divide by max. Bilinear resizing
            # commutes with affine rescaling, so min-max scaling ours must give exactly its output.
            u = ours_up[i, c]
            torch.testing.assert_close((u - u.min()) / (u.max() - u.min()), torch.as_tensor(out[i]), atol=1e-5, rtol=1e-4)
            n_checked += 1
    assert n_checked == sum(len(cs) for cs in targets.values())
    # non-targets stay zero
    assert ours_up[0, 500].abs().sum() == 0 and ours_up[1, 1].abs().sum() == 0


def test_gradcam_per_image_targets_independent(resnet18):
    torch.manual_seed(2)
    x = torch.randn(2, 3, 64, 64)
    a = grad_cam(resnet18, x, 'layer3', torch.eye(1000)[[5, 9]])
    b = grad_cam(resnet18, x[:1], 'layer3', torch.eye(1000)[[5]])
    torch.testing.assert_close(a[0], b[0], atol=1e-5, rtol=1e-4)
    assert len(resnet18.layer3._forward_hooks) == 0
