"""The global batch: 2 processes x batch B give the loss and gradients of 1 process x batch 2B.

Two gloo processes (torch.multiprocessing, a file rendezvous) each embed half of a batch with the
same small encoders wrapped in DDP, gather the embeddings with ``cotrain.contrastive.loss.gather``
and back-propagate the tri-modal loss; the single-process run embeds the whole batch. DDP averages
the parameter gradients over ranks, so they must equal the single-process ones. The torchrun run of a
whole CLIP recipe is in tests/cotrain/test_distributed.py (beside the shared torchrun helpers).
"""

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cotrain.contrastive.loss import gather, logit_scale_value, tri_modal_loss

B, D_IN, D = 3, 6, 4


class Encoders(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.image = torch.nn.Linear(D_IN, D)
        self.text = torch.nn.Linear(D_IN, D)
        self.logit_scale = torch.nn.Parameter(torch.tensor(2.0))

    def forward(self, images, texts):
        norm = torch.nn.functional.normalize
        return norm(self.image(images), dim=-1), norm(self.text(texts), dim=-1)


def _batch():
    g = torch.Generator().manual_seed(42)
    return torch.randn(2 * B, D_IN, generator=g), torch.randn(2 * B, D_IN, generator=g), \
        torch.randn(2 * B, D_IN, generator=g), torch.randn(2 * B, D_IN, generator=g)


def _loss(model, module, rgb, ir, text, ir_text):
    n = rgb.shape[0]
    images, texts = model(torch.cat([rgb, ir]), torch.cat([text, ir_text]))
    return tri_modal_loss(gather(images[:n]), gather(images[n:]), gather(texts[:n]), gather(texts[n:]),
                          logit_scale_value(module.logit_scale), "mixed")[0]


def _worker(rank, world, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        module = Encoders()
        model = torch.nn.parallel.DistributedDataParallel(module)
        part = [x[rank * B:(rank + 1) * B] for x in _batch()]
        loss = _loss(model, module, *part)
        loss.backward()
        torch.save({"loss": loss.detach(), "grads": {n: p.grad for n, p in module.named_parameters()}},
                   os.path.join(out_dir, f"rank{rank}.pt"))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_two_processes_equal_one_process_with_the_whole_batch(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=2, join=True)
    module = Encoders()
    loss = _loss(module, module, *_batch())
    loss.backward()
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert torch.allclose(got["loss"], loss.detach(), atol=1e-6), rank
        for name, p in module.named_parameters():
            assert torch.allclose(got["grads"][name], p.grad, atol=1e-6), (rank, name)


def test_a_local_batch_is_not_the_global_one():
    # the check has teeth: without the gather, half a batch gives another loss
    module = Encoders()
    rgb, ir, text, ir_text = _batch()
    whole = _loss(module, module, rgb, ir, text, ir_text)
    half = _loss(module, module, rgb[:B], ir[:B], text[:B], ir_text[:B])
    assert abs(whole.item() - half.item()) > 1e-3

