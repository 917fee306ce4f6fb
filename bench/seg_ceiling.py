"""What bounds the harder variant's ladder from above? The `cpu` preset's segmentation network (`seg_small`), four
variants of it and pretrained ones, each trained on the harder variant's ground-truth masks (or its pseudo labels),
scored on its val split.

Usage: python bench/seg_ceiling.py [--work DIR] [--variants base,patience12,os8,pool,wide,lite0,lite0_os16,lite0_os16_adamw]
                                   [--labels gt|pseudo|psl]

The set is `bench/carry.py`'s harder variant (written under --work as carry.py writes it, or reused). Every network is
trained as `Pipeline.train_seg(labels='gt')` trains the reference of carry.md: the same splits (10 % of the training
split held out, seed 0), dataset mean pixel, recipe, epoch cap (60) and stopping rule (held-out cross-entropy, patience
5, the rate lowered after 2 epochs without progress), unless the variant says otherwise. With `--labels pseudo` they
learn from the pseudo labels of carry.py's hard run instead (`run_hard/pseudo` under --work) and stop on the held-out
images' pseudo labels, as `Pipeline.train_seg` trains AE-SSL: AE-SSL with another network, the erasing and the pseudo
labels unchanged; with `--labels psl` they start from that network and add the online-label term (λ = 1 from the
start, as the `cpu` preset's AE-PSL): AE-PSL with another network. The variants:

- base: `seg_small` as the preset builds it (output stride 4, a 53 px receptive field);
- patience12: the same network given more time (patience 12, the rate lowered after 5);
- os8: a stride-2 last block (output stride 8, a 77 px receptive field);
- pool: image-level context (each location also sees the mean of the trunk's features, as DeepLab v3's image pooling);
- wide: every layer twice as wide;
- lite0: the `photos` preset's `lite0_seg` (EfficientNet-Lite0 with ImageNet weights from the pip package, output
  stride 8, LargeFOV head), its input statistics and recipe, but `seg_small`'s crop (80 px: these images are 64–128 px);
- lite0_os16: the same at output stride 16 (about 3× cheaper per epoch here);
- lite0_os16_adamw: the same with `seg_small`'s optimiser: AdamW, its rate (3e-3) for the new head, a third of it for
  the pretrained trunk (SGD at 0.01 was still improving at the 60-epoch cap).

Prints, and writes to bench/results/seg_ceiling.md and .json, each network's held-out and val mIoU (and val with the
`cpu` preset's DenseCRF, as the AE-PSL + CRF rung), its branch's held-out mAP, its epochs, whether
it stopped by patience or the cap and its seconds of training; a call reruns the variants it names and keeps the rows of
the others from seg_ceiling.json. Beside them the rungs of carry.json's hard run: CAM, the last AE step (both read
with each image's labels) and AE-SSL.
--smoke is a seconds-long check of the script that never writes to bench/results."""
import json, sys
from pathlib import Path
import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from carry import machine, parser, write_set

class ImagePool(nn.Module):
    "Each location's features, then the image's mean feature: every location sees which classes the image holds."
    def forward(self, x): return torch.cat([x, x.mean((2, 3), keepdim=True).expand_as(x)], 1)

ORDER = ['base', 'patience12', 'os8', 'pool', 'wide', 'lite0', 'lite0_os16', 'lite0_os16_adamw']

def variant(name:str, n_classes:int):
    "(network, stopping overrides, what it is)."
    from aepsl.models import seg_small, small_cnn, largefov_head, SegNet
    if name == 'base': return seg_small(n_classes), {}, "`seg_small`, the `cpu` preset's"
    if name == 'patience12': return seg_small(n_classes), dict(patience=12, lr_patience=5), 'the same, patience 12 (rate lowered after 5)'
    if name == 'os8': return seg_small(n_classes, strides=(1, 2, 1, 2, 1, 2)), {}, 'output stride 8 (last block strided)'
    if name == 'wide': return seg_small(n_classes, widths=(32, 64, 64, 128, 128, 256), width=256), {}, 'every layer twice as wide'
    if name == 'pool':
        ref = seg_small(n_classes)
        layers = list(small_cnn(n_classes).features) + [ImagePool()] + largefov_head(256, 128, 3, dropout=0, bn=True)
        return SegNet(nn.Sequential(*layers), 128, n_classes, recipe=ref.recipe), {}, 'image pooling before the head'
    if name in ('lite0', 'lite0_os16', 'lite0_os16_adamw'):
        from aepsl.models import lite0_seg
        stride = 8 if name == 'lite0' else 16
        net, small = lite0_seg(n_classes, weights='imagenet', output_stride=stride), seg_small(n_classes).recipe
        net.recipe = dict(net.recipe, crop=small['crop'])
        if name.endswith('adamw'):
            net.recipe.update(opt='adamw', lr=small['lr'] / 3, head_mult=3, wd=small['wd'])
            return net, {}, f"`lite0_seg`, ImageNet weights, output stride {stride}, AdamW (head {small['lr']:g}, trunk a third)"
        return net, {}, f"`lite0_seg`, ImageNet weights, output stride {stride}"
    raise SystemExit(f"unknown variant {name!r}")

def main():
    ap = parser(__doc__)
    ap.add_argument('--work', default='runs/carry', help='folder of the sets (shared with bench/carry.py) and of these runs')
    ap.add_argument('--variants', default=','.join(ORDER))
    ap.add_argument('--labels', default='gt', choices=('gt', 'pseudo', 'psl'),
                    help="what the networks learn from: the masks (gt), the pseudo labels of bench/carry.py's hard run "
                         "under --work (run_hard/pseudo: AE-SSL with another network), or those and the online labels, "
                         "starting from the pseudo row's network (psl: AE-PSL with another network)")
    ap.add_argument('--smoke', action='store_true', help='a tiny set and 2 epochs: checks the script, writes nothing to bench/results')
    a = ap.parse_args()
    from aepsl.voc import run_splits
    from aepsl.data import mean_pixel, pixel_std
    from aepsl.runs import Stage
    from aepsl.train import set_seed, load_checkpoint
    from aepsl.models import receptive_field
    from aepsl.config import PIPELINE_PRESETS
    from aepsl.psl import SegDataset, PSLLoss, seg_stage, seg_train_tfms, predict_stage, evaluate_predictions, FolderMasks
    work = Path(a.work)
    n_train, n_val = (40, 10) if a.smoke else (1000, 200)
    data = write_set(work / ('data_hard' if not a.smoke else 'smoke_data_hard'), 'hard', n_train, n_val)
    out = work / ('seg_ceiling' if not a.smoke else 'smoke_seg_ceiling')
    trn, hold, ev = run_splits(data, 'train', None, 'val', 0.1, 0)   # the pipeline's defaults: holdout_frac 0.1, seed 0
    pseudo, pseudo_cfg = None, {}
    if a.labels in ('pseudo', 'psl'):   # the hard run's pseudo labels; its held-out images are these splits' (checked)
        run = work / 'run_hard'
        if not (run / 'pseudo' / 'done.json').is_file(): raise SystemExit(f"no finished pseudo labels in {run}: run bench/carry.py first")
        if (run / 'holdout.txt').read_text().split() != list(hold.ids): raise SystemExit(f"{run}'s held-out images are not these splits'")
        pseudo, pseudo_cfg = run / 'pseudo', dict(labels='pseudo', pseudo=json.loads((run / 'pseudo' / 'done.json').read_text())['hash'])
    names = a.variants.split(',')
    if a.labels == 'psl':   # AE-PSL starts from each variant's AE-SSL network: all of them there before anything is trained
        if missing := [n for n in names if not (out / f'{n}_pseudo' / 'done.json').is_file()]:
            raise SystemExit(f"--labels psl starts from the --labels pseudo networks; not trained yet: {', '.join(missing)}")
    data_mean = mean_pixel(trn)
    data_std = pixel_std(trn, data_mean)
    rows = []
    for name in names:
        set_seed(0)
        net, stop, what = variant(name, len(trn.classes))
        stop = dict(dict(patience=5, sched='plateau', lr_patience=2), **stop)
        recipe = net.recipe   # a pretrained network's own input statistics; else the dataset's, as the `cpu` preset
        mean, std = (np.array(recipe['mean'], np.float32), np.array(recipe['std'], np.float32)) if 'mean' in recipe else (data_mean, data_std)
        epochs = 2 if a.smoke else 60
        folder, psl = name + {'gt': '', 'pseudo': '_pseudo', 'psl': '_psl'}[a.labels], a.labels == 'psl'
        init = {}
        if psl:   # AE-PSL as the `cpu` preset trained it then: from the trained AE-SSL network, λ = 1 from the start (psl.init; psl.weight is 0.5 since)
            ssl = out / f'{name}_pseudo'
            load_checkpoint(ssl / 'model.pt', net)
            init = dict(psl=True, init=json.loads((ssl / 'done.json').read_text())['hash'])
        st = Stage(out / folder, dict(variant=name, epochs=epochs, **stop, data=str(data), **pseudo_cfg, **init))
        held = FolderMasks(hold, pseudo) if pseudo else hold   # as `Pipeline.train_seg`: stopped on the held-out images' own labels
        rec = seg_stage(st, net, SegDataset(trn, pseudo, seg_train_tfms(net.recipe, mean, std)), PSLLoss(psl=psl), held=held,
                        branch_on=hold, mean=mean, std=std, epochs=epochs, bs=16, seed=0, num_workers=0, device='cpu', progress=False, **stop)
        if rec.get('skipped'): load_checkpoint(st.folder / 'model.pt', net)   # trained before: its weights, for predictions not yet made
        pred = Stage(out / f'{folder}_pred', dict(model=st.hash))
        predict_stage(net.eval(), ev, pred, (1.0,), False, crf=None, mean=mean, std=std, progress=False)
        r = evaluate_predictions(out / f'{folder}_pred', ev)
        crf = PIPELINE_PRESETS['cpu'].test.crf   # the `cpu` preset's DenseCRF, as its AE-PSL + CRF rung
        pred_crf = Stage(out / f'{folder}_pred_crf', dict(model=st.hash, crf=crf))
        predict_stage(net.eval(), ev, pred_crf, (1.0,), False, crf=crf, crf_workers=0, mean=mean, std=std, progress=False)
        r_crf = evaluate_predictions(out / f'{folder}_pred_crf', ev)
        rows.append(dict(variant=name, labels={'gt': 'masks', 'pseudo': 'pseudo labels', 'psl': 'pseudo + online labels (PSL)'}[a.labels],
                         what=what, branch_mAP=rec.get('branch_mAP'), params=sum(p.numel() for p in net.parameters()),
                         receptive_field=receptive_field(net, 161), mIoU=r['mIoU'], mIoU_crf=r_crf['mIoU'], epochs=rec['epochs'], cap=epochs,
                         stopped_by=rec['stopped_by'], best_epoch=rec['best_epoch'], held_mIoU=rec.get('held_mIoU'),
                         seconds=round(rec['train_time'])))   # the training's own seconds (a rerun reads them back)
        print(rows[-1], flush=True)
    lad = {}   # the hard run's rungs (carry.json): CAM, the last AE step, AE-SSL
    carry = HERE / 'results' / 'carry.json'
    if carry.is_file():
        ladder = json.loads(carry.read_text())['sets']['hard']['ladder']
        rungs = {x['rung']: x['mIoU'] for x in ladder}
        lad = {'CAM': rungs.get('CAM'), 'AE (last step)': [x['mIoU'] for x in ladder if ' step ' in x['rung']][-1], 'AE-SSL': rungs.get('AE-SSL')}
    cam = lad.get('CAM')
    dest = out if a.smoke else HERE / 'results'
    done = dest / 'seg_ceiling.json'   # rows of variants not rerun now are kept (same sets, same rule), in the default order
    if done.is_file():
        key = lambda r: (r['variant'], r.get('labels', 'masks'))
        mine = {key(r) for r in rows}
        rows = [r for r in json.loads(done.read_text())['rows'] if key(r) not in mine] + rows
    LABELS = ['masks', 'pseudo labels', 'pseudo + online labels (PSL)']
    rows.sort(key=lambda r: (LABELS.index(r.get('labels', 'masks')), ORDER.index(r['variant']) if r['variant'] in ORDER else len(ORDER)))
    lines = [f"`python bench/seg_ceiling.py --work {a.work} --variants {a.variants} --labels {a.labels}` (other rows: earlier calls)", '',
             f"Machine: {machine()['platform']}; {machine()['cpu']}, {machine()['cpu_count']} cores; torch {machine()['torch']}", '',
             f"The harder variant ({n_train} + {n_val} images); each network trained on the training split's ground-truth masks, "
             "or on the pseudo labels of bench/carry.py's hard run (AE-SSL with that network), or on those and the online labels "
             "from that AE-SSL network on (AE-PSL: λ = 1, predictions not weighted by the branch), 10 % of the training images "
             "held out to stop it (held-out mIoU: against those images' own labels, masks or pseudo labels); mIoU (%) on val. The hard "
             "run's rungs (carry.json; CAM and AE read with each image's labels): "
             + ('; '.join(f"{k} {v}" for k, v in lad.items()) or '–') + '.', '',
             '| variant | network | learns from | parameters | receptive field (px) | held-out mIoU | branch mAP (held out) | val mIoU | val mIoU + CRF | epochs (cap) | stopped by | seconds of training (per epoch) |',
             '|---|---|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        rf = 'whole image' if r['receptive_field'] >= 161 else r['receptive_field']
        lines.append(f"| {r['variant']} | {r['what']} | {r.get('labels', 'masks')} | {r['params']:,} | {rf} | {r.get('held_mIoU', '–')} | {r.get('branch_mAP') or '–'} | {r['mIoU']:.2f} | {r.get('mIoU_crf', '–')} | {r['epochs']} ({r['cap']}) | "
                     f"{r['stopped_by']} | {r['seconds']} ({r['seconds'] / r['epochs']:.1f}) |")
    md = '\n'.join(lines) + '\n'
    print(md)
    (dest / 'seg_ceiling.md').write_text(md)
    (dest / 'seg_ceiling.json').write_text(json.dumps(dict(machine=machine(), cam_rung=cam, rows=rows), indent=1) + '\n')

if __name__ == '__main__': main()
