"""Prohibitive segmentation learning on the built-in synthetic benchmark (CPU configuration): the comparison table
(fully supervised upper bound, SEC from CAM seeds, AE-SSL, AE-PSL; held-out mIoU without and with DenseCRF), and the
training throughput of PSL through the shared `fit` loop against a bare PyTorch loop over the same network and data.

The pseudo labels are the real pipeline's: adversarial erasing (`aepsl.erasing`, preset 'cpu') mines the objects,
unsupervised saliency (`aepsl.saliency`) gives the background, `aepsl.pseudo` merges them with 255 where in doubt.
SEC's seeds are the same stage (`pseudo_stage`) on the first erasing step's CAM regions only (no erasing).
These are the stage functions `aepsl_run` calls (`aepsl.pipeline`), so the table measures the user's code path.
(A --run folder made before this change holds `seeds/` under another config: use a new --run or delete it.)
Every stage lives in a resumable run folder (`--run`); the table goes to bench/results/psl.json and psl.md.

    python bench/psl.py [--n_train 400] [--n_holdout 100] [--n_test 100] [--epochs 30] [--run /tmp/aepsl_bench_psl]

`--methods` takes `name` or `name@seed` (the same method trained again with another seed, same pseudo labels).
The third column scores the predictions prohibited by the network's own classification branch ([1, v] ⊗ f, the
operator of PSL's online labels, applied at test time), for the networks whose branch is trained (not SEC's).
"""
import json, platform, subprocess, sys, time
from pathlib import Path
import numpy as np, torch
import torch.nn.functional as F
from fastcore.script import call_parse
from aepsl.data import SyntheticWSSS
from aepsl.models import seg_small
from aepsl.runs import RunFolder, write_json, atomic_write
from aepsl.erasing import MINERS
from aepsl.saliency import saliency_stage
from aepsl.pseudo import pseudo_stage
from aepsl.train import default_device, load_checkpoint
from aepsl.psl import SegDataset, seg_train_tfms, fit_seg, predict_stage, evaluate_folder, make_segnet

METHODS = {  # name -> (label source, loss)
    'full': ('gt', 'full'), 'sec': ('seeds', 'sec'), 'ssl': ('pseudo', 'ssl'), 'psl': ('pseudo', 'psl')}
NAMES = {'full': 'fully supervised (upper bound)', 'sec': 'SEC (CAM seeds)', 'ssl': 'AE-SSL', 'psl': 'AE-PSL'}


def machine():
    try: out = subprocess.run(['lscpu'], capture_output=True, text=True).stdout
    except OSError: out = ''
    cpu = next((l.split(':', 1)[1].strip() for l in out.splitlines() if l.startswith('Model name')), platform.processor())
    if torch.cuda.is_available(): cpu += f', GPU {torch.cuda.get_device_name(0)}'
    return f"{cpu}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, device {default_device()}"


def throughput(train, labels_dir, steps, bs, device, repeats=3):
    "Images/s of a bare loop (CE + BCE), of `fit` with SSL and of `fit` with PSL, same network, data and loader."
    n = steps * bs
    sub = torch.utils.data.Subset(SegDataset(train, labels_dir, tfms=seg_train_tfms(seg_small(len(train.classes)).recipe)), range(n))
    def bare():
        torch.manual_seed(0); m = seg_small(len(train.classes)).to(device)
        opt = torch.optim.AdamW(m.parameters(), 3e-3, weight_decay=1e-4)
        dl = torch.utils.data.DataLoader(sub, bs, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(0))
        t0 = time.perf_counter()
        for x, y, s in dl:
            x, y, s = x.to(device), y.to(device), s.to(device)
            seg, cls = m(x)
            seg = F.interpolate(seg, s.shape[-2:], mode='bilinear', align_corners=False)
            loss = F.cross_entropy(seg, torch.where(s == 254, 255, s), ignore_index=255) + F.binary_cross_entropy_with_logits(cls, y)
            opt.zero_grad(); loss.backward(); opt.step()
        float(loss.detach())
        return n / (time.perf_counter() - t0)
    def through_fit(loss):
        torch.manual_seed(0); m = seg_small(len(train.classes))
        t0 = time.perf_counter()
        fit_seg(m, sub, loss, epochs=1, bs=bs, device=device, progress=False)
        return n / (time.perf_counter() - t0)
    res = {k: [] for k in ('bare loop (CE + BCE)', 'fit, AE-SSL loss', 'fit, AE-PSL loss')}
    bare()                                   # warm-up
    for _ in range(repeats):                 # interleaved, so that contention hits all three alike
        res['bare loop (CE + BCE)'].append(bare())
        res['fit, AE-SSL loss'].append(through_fit('ssl'))
        res['fit, AE-PSL loss'].append(through_fit('psl'))
    return {k: float(np.median(v)) for k, v in res.items()}


@call_parse
def main(n_train:int=400, # training images (image-level labels only, except for the upper bound)
         n_holdout:int=100, # held-out images for the erasing stopping rule
         n_test:int=100, # held-out images with masks: the table's mIoU
         epochs:int=30, # segmentation training epochs (every method)
         run:str='/tmp/aepsl_bench_psl', # resumable run folder
         out:str='bench/results/psl', # writes <out>.json and <out>.md
         crf:str='psa', # aepsl.crf preset for the "+ CRF" column
         tp_steps:int=25, # throughput: optimiser steps per measurement (steps × batch ≤ n_train)
         methods:str='full,sec,ssl,psl,ssl@1,psl@1', # methods to run, in table order; name@seed: another training seed
         seed:int=0, # training seed
         ae_patience:int=None, # erasing classifiers' early-stopping patience (None: the 'cpu' preset's)
         train_only:bool=False, # stop after training (e.g. train on a GPU machine, predict and score here)
         num_workers:int=0, # data-loader workers for training
        ):
    "Run the PSL comparison and throughput benchmark; write the table."
    t_start = time.time()
    tp_bs = seg_small(1).recipe['bs']
    if tp_steps * tp_bs > n_train:     # checked before hours of training, not after
        raise SystemExit(f"--tp_steps {tp_steps} × batch {tp_bs} = {tp_steps * tp_bs} images, more than --n_train {n_train}")
    trn, hold, test = SyntheticWSSS(n_train, seed=0), SyntheticWSSS(n_holdout, seed=1), SyntheticWSSS(n_test, seed=2)
    cfg = dict(n_train=n_train, n_holdout=n_holdout, n_test=n_test, seed=seed)
    rf = RunFolder(run, cfg)           # each stage records its own settings (epochs, CRF preset) in its config
    dev = default_device()
    rf.log.info(f'machine: {machine()}')

    # pseudo labels: adversarial erasing + saliency, the real pipeline
    ae = MINERS('ae', trn, hold, Path(run) / 'ae', preset='cpu', seed=seed, patience=ae_patience)   # aepsl_run's erasing stage
    ae.run()
    objs = ae.write_pseudo_objects()
    sal = saliency_stage(trn, Path(run) / 'saliency', progress=False)
    pseudo = pseudo_stage(trn, Path(run) / 'pseudo', sal.folder, objs.folder, config=dict(objects=objs.hash, saliency=sal.hash), progress=False)
    # SEC's seeds: the same stage and rule, on the first step's regions only (no erasing)
    seeds = pseudo_stage(trn, Path(run) / 'seeds', sal.folder, objects=lambda i: ae.label_map(i, max_step=1, conflict=255),
                         config=dict(step=1, objects=objs.hash, saliency=sal.hash), progress=False)
    rf.log.info(f'AE steps used: {ae.n_used}; pseudo-label quality: {json.dumps(pseudo.record.get("quality", {}))[:300]}')
    dirs = dict(gt=None, pseudo=pseudo.folder, seeds=seeds.folder)

    rows, curves = [], {}
    for key in methods.split(','):
        name, s_ = key.split('@') if '@' in key else (key, seed)
        s_ = int(s_)
        tag = name if s_ == seed else f'{name}_s{s_}'
        src, loss = METHODS[name]
        st = rf.stage(f'seg/{tag}', dict(labels=src, loss=loss, epochs=epochs, seed=s_,
                                          upstream=None if src == 'gt' else (pseudo.hash if src == 'pseudo' else seeds.hash))).begin()
        torch.manual_seed(s_)
        m = make_segnet('seg_small', len(trn.classes))   # aepsl_run's --seg_arch registry
        t0 = time.time()
        if not st.done:
            ds = SegDataset(trn, dirs[src], tfms=seg_train_tfms(m.recipe))
            hist = fit_seg(m, ds, loss, epochs=epochs, seed=s_, valid_ds=test, device=dev, progress=False,
                           ckpt=st.folder / 'model.pth', resume=True, num_workers=num_workers)
            st.finish(history=hist, seconds=round(time.time() - t0, 1), device=machine())
        if train_only: continue
        load_checkpoint(st.folder / 'model.pth', m)
        m.to(dev)
        curves[tag] = [h['valid_mIoU'] for h in st.record['history']]
        res = {}
        for sfx, c, pro in (('', None, False), ('_crf', crf, False), ('_crf_prohibit', crf, True)):
            if pro and loss == 'sec': continue          # SEC trains no classification branch
            cfg_p = dict(model=st.hash, crf=c, **(dict(prohibit_classes=True) if pro else {}))
            p = predict_stage(m, test, rf.stage(f'pred{sfx}/{tag}', cfg_p), crf=c, progress=False, prohibit_classes=pro)
            res[f'mIoU{sfx}'] = round(100 * evaluate_folder(test, p.folder).miou, 1)
        label = NAMES[name] + ('' if s_ == seed else f', seed {s_}')
        rows.append(dict(method=label, key=tag, seed=s_, **res, train_s=st.record['seconds'], trained_on=st.record.get('device')))
        rf.log.info(f'{tag}: {res}')
    if train_only: return
    full = next((r for r in rows if r['key'] == 'full'), None)
    for r in rows:
        if full: r['pct_of_full_crf'] = round(100 * r['mIoU_crf'] / full['mIoU_crf'], 1)
    tp = throughput(trn, pseudo.folder, tp_steps, tp_bs, dev)
    base = tp['bare loop (CE + BCE)']
    tp_rows = [dict(setting=k, images_per_s=round(v, 1), overhead_pct=round(100 * (base / v - 1), 1)) for k, v in tp.items()]
    q = pseudo.record.get('quality', {})
    res = dict(command='python ' + ' '.join(sys.argv), machine=machine(), config=dict(cfg, epochs=epochs, crf=crf), ae_steps=ae.n_used,
               pseudo_quality=q, table=rows, curves=curves, throughput=tp_rows,
               seconds=round(time.time() - t_start, 1))
    out = Path(out)
    write_json(out.with_suffix('.json'), res)
    md = [f"`{res['command']}`", '', f"Machine: {res['machine']}", '',
          '| method | mIoU (%) | mIoU + CRF (%) | % of upper bound (CRF) | mIoU + CRF, prohibited by [1, v] (%) |', '|---|---|---|---|---|']
    md += [f"| {r['method']} | {r['mIoU']} | {r['mIoU_crf']} | {r.get('pct_of_full_crf', '')} | {r.get('mIoU_crf_prohibit', '–')} |" for r in rows]
    md += ['', '| training | images/s | overhead vs bare loop (%) |', '|---|---|---|']
    md += [f"| {r['setting']} | {r['images_per_s']} | {r['overhead_pct']} |" for r in tp_rows]
    atomic_write(out.with_suffix('.md'), lambda p: Path(p).write_text('\n'.join(md) + '\n'))
    print('\n'.join(md))
