"""CAMs per second: our batched CAM (`aepsl.cam.cam_from_fc`) and Grad-CAM (`aepsl.gradcam.grad_cam`) against
`pytorch_grad_cam.GradCAM`, on the same model, batch and machine, in one run.

Unit: one "CAM" = one (image, present class) map at image resolution. Every method produces the maps of all present
classes of the batch: ours in one forward pass (CAM) or one forward + one backward per distinct class (Grad-CAM);
pytorch_grad_cam needs one call (forward + backward) per class, on the images that contain that class (it takes one
target per image per call).

    python bench/cam_speed.py [--repeats 5] [--resnet]
"""
import argparse, platform, subprocess, time
import numpy as np, torch
from aepsl.models import small_cnn, resnet50_cam
from aepsl.cam import cam_from_fc
from aepsl.gradcam import grad_cam


def machine():
    try: cpu = next(l.split(':', 1)[1].strip() for l in subprocess.run(['lscpu'], capture_output=True, text=True).stdout.splitlines() if l.startswith('Model name'))
    except Exception: cpu = platform.processor()
    return f"{cpu}; {torch.get_num_threads()} torch threads; torch {torch.__version__}; python {platform.python_version()}"


def lib_cams(model, layer, x, labels):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    out = []
    with GradCAM(model=model, target_layers=[layer]) as g:
        for c in labels.any(0).nonzero().flatten().tolist():
            idx = labels[:, c].nonzero().flatten()
            out.append(g(input_tensor=x[idx], targets=[ClassifierOutputTarget(c)] * len(idx)))
    return out


def timeit(f, repeats):
    f()  # warm-up
    ts = []
    for _ in range(repeats):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def bench(name, model, layer_name, x, labels, repeats):
    model.eval()
    n = int(labels.sum())
    layer = model.get_submodule(layer_name)
    rows = [('aepsl cam_from_fc', timeit(lambda: cam_from_fc(model, x, labels), repeats)),
            ('aepsl grad_cam', timeit(lambda: grad_cam(model, x, layer_name, labels), repeats)),
            ('pytorch_grad_cam GradCAM', timeit(lambda: lib_cams(model, layer, x, labels), repeats))]
    ref = rows[-1][1]
    print(f"\n{name}: batch {len(x)}×{tuple(x.shape[1:])}, {n} (image, class) maps per batch, median of {repeats}")
    print("| method | s/batch | CAMs/s | speed-up vs pytorch_grad_cam |\n|---|---|---|---|")
    for k, t in rows: print(f"| {k} | {t:.4f} | {n / t:.0f} | {ref / t:.1f}× |")
    return rows


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--bs', type=int, default=32)
    p.add_argument('--resnet', action='store_true', help='also ResNet-18 (output stride 32) at 224 px, 20 classes')
    a = p.parse_args()
    print(machine())
    torch.manual_seed(0)
    from aepsl.data import SyntheticWSSS
    ds = SyntheticWSSS(a.bs, seed=1)
    x = (torch.from_numpy(ds.images).permute(0, 3, 1, 2).float() - 128) / 64
    bench('small_cnn (5 classes, 96 px, synthetic labels)', small_cnn(5), 'features', x, torch.from_numpy(ds.labels), a.repeats)
    if a.resnet:
        bs = min(a.bs, 16)
        g = torch.Generator().manual_seed(0)
        labels = torch.zeros(bs, 20); labels[torch.arange(bs), torch.randint(0, 20, (bs,), generator=g)] = 1
        labels[torch.rand(bs, 20, generator=g) < 0.03] = 1   # ~1.6 classes per image, like VOC
        m = resnet50_cam(20, weights=None, output_stride=32, arch='resnet18')
        bench('ResNet-18 CAMClassifier (20 classes, 224 px)', m, 'features.layer4', torch.randn(bs, 3, 224, 224), labels, a.repeats)
