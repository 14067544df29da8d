"""ISTA-Net+ written as its authors' test script writes it (Zhang & Ghanem, CVPR 2018):
convolution weights are raw ``nn.Parameter`` tensors applied with ``F.conv2d``, the
inputs are matrices ``(Phix, Phi, Qinit)`` of 33x33 blocks flattened row-major, and the
output is a list ``[x, symmetry losses]``. Re-typed in the authors' idiom for the tests;
it loads the official ``net_params_200.pkl`` state dicts (keys ``fcs.K.name``, saved from
``nn.DataParallel`` with a ``module.`` prefix)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn import init


class BasicBlock(torch.nn.Module):
    def __init__(self):
        super(BasicBlock, self).__init__()

        self.lambda_step = nn.Parameter(torch.Tensor([0.5]))
        self.soft_thr = nn.Parameter(torch.Tensor([0.01]))

        self.conv_D = nn.Parameter(init.xavier_normal_(torch.Tensor(32, 1, 3, 3)))

        self.conv1_forward = nn.Parameter(init.xavier_normal_(torch.Tensor(32, 32, 3, 3)))
        self.conv2_forward = nn.Parameter(init.xavier_normal_(torch.Tensor(32, 32, 3, 3)))
        self.conv1_backward = nn.Parameter(init.xavier_normal_(torch.Tensor(32, 32, 3, 3)))
        self.conv2_backward = nn.Parameter(init.xavier_normal_(torch.Tensor(32, 32, 3, 3)))

        self.conv_G = nn.Parameter(init.xavier_normal_(torch.Tensor(1, 32, 3, 3)))

    def forward(self, x, PhiTPhi, PhiTb):
        x = x - self.lambda_step * torch.mm(x, PhiTPhi)
        x = x + self.lambda_step * PhiTb
        x_input = x.view(-1, 1, 33, 33)

        x_D = F.conv2d(x_input, self.conv_D, padding=1)

        x = F.conv2d(x_D, self.conv1_forward, padding=1)
        x = F.relu(x)
        x_forward = F.conv2d(x, self.conv2_forward, padding=1)

        x = torch.mul(torch.sign(x_forward), F.relu(torch.abs(x_forward) - self.soft_thr))

        x = F.conv2d(x, self.conv1_backward, padding=1)
        x = F.relu(x)
        x_backward = F.conv2d(x, self.conv2_backward, padding=1)

        x_G = F.conv2d(x_backward, self.conv_G, padding=1)

        x_pred = x_input + x_G

        x_pred = x_pred.view(-1, 1089)

        x = F.conv2d(x_forward, self.conv1_backward, padding=1)
        x = F.relu(x)
        x_D_est = F.conv2d(x, self.conv2_backward, padding=1)
        symloss = x_D_est - x_D

        return [x_pred, symloss]


class ISTANetplus(torch.nn.Module):
    def __init__(self, LayerNo):
        super(ISTANetplus, self).__init__()
        onelayer = []
        self.LayerNo = LayerNo

        for i in range(LayerNo):
            onelayer.append(BasicBlock())

        self.fcs = nn.ModuleList(onelayer)

    def forward(self, Phix, Phi, Qinit):

        PhiTPhi = torch.mm(torch.transpose(Phi, 0, 1), Phi)
        PhiTb = torch.mm(Phix, Phi)

        x = torch.mm(Phix, torch.transpose(Qinit, 0, 1))

        layers_sym = []   # for computing symmetric loss

        for i in range(self.LayerNo):
            [x, layer_sym] = self.fcs[i](x, PhiTPhi, PhiTb)
            layers_sym.append(layer_sym)

        x_final = x

        return [x_final, layers_sym]


def load_official(folder, layers: int = 9) -> ISTANetplus:
    """The official CS model of ``folder`` (``net_params_200.pkl``), as a user loads it."""
    model = ISTANetplus(layers)
    state = torch.load(f"{folder}/net_params_200.pkl", map_location="cpu", weights_only=True)
    model.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
    return model.eval()


def official_inputs(folder, ratio: int, blocks: int = 4, seed: int = 0):
    """``(Phix, Phi, Qinit)`` for ``blocks`` random image blocks with the official matrices."""
    from scipy.io import loadmat
    phi = torch.from_numpy(loadmat(f"{folder}/phi_0_{ratio}_1089.mat")["phi"]).float()
    qinit = torch.from_numpy(loadmat(f"{folder}/Initialization_Matrix_{ratio}.mat")["Qinit"]).float()
    x = torch.rand(blocks, 1089, generator=torch.Generator().manual_seed(seed))
    return torch.mm(x, phi.t()), phi, qinit


def call(model, y, physics):
    """ISTA-Net+ from SPADE's ``(y, physics)``: one row of ``Phix`` per 33x33 block (SPADE's
    (B, m, H/33, W/33) in row-major block order), the blocks put back into images."""
    from spade.physics.cs import batch_to_blocks
    b, m, h, w = y.shape
    phix = y.permute(0, 2, 3, 1).reshape(-1, m)
    x = model(phix, physics.phi, physics.qinit)[0]
    return batch_to_blocks(x.view(-1, 1, 33, 33), (b, 1, h * 33, w * 33))


def physics(folder, ratio: int):
    """SPADE's block CS with the official Phi and Qinit of ``folder``."""
    from spade.physics import build_physics
    return build_physics({"kind": "cs", "phi": f"{folder}/phi_0_{ratio}_1089.mat",
                          "qinit": f"{folder}/Initialization_Matrix_{ratio}.mat"})
