"""A deep equilibrium network written the way the DEQ-for-inverse-problems releases write
it (Gilton, Ongie & Willett 2021; trained with Jacobian-free backpropagation as in Fung
et al. 2022): a ``LinearOperator`` class with ``forward`` / ``adjoint`` / ``gramian``, a
gradient step ``EquilibriumGrad`` whose learned part is a DnCNN (``nn.Sequential`` of
conv + BatchNorm + ReLU(inplace=True), no bias) and a clamp, and ``DEQFixedPoint``: the
fixed point is found by forward iteration under ``torch.no_grad()`` (a ``while``-style loop
stopping on a residual read with ``.item()``), then one more step with gradients.
Re-typed small for the tests."""
from __future__ import annotations

import torch
import torch.nn as nn


class LinearOperator(torch.nn.Module):
    def __init__(self):
        super(LinearOperator, self).__init__()

    def forward(self, x):
        pass

    def adjoint(self, x):
        pass

    def gramian(self, x):
        return self.adjoint(self.forward(x))


class PhysicsOperator(LinearOperator):
    """Any operator with ``A`` / ``A_adjoint`` (a DeepInverse- or SPADE-style physics)."""

    def __init__(self, physics):
        super(PhysicsOperator, self).__init__()
        self.physics = physics

    def forward(self, x):
        return self.physics.A(x)

    def adjoint(self, x):
        return self.physics.A_adjoint(x)


class DnCNN(nn.Module):
    def __init__(self, channels, num_of_layers=17, features=64):
        super(DnCNN, self).__init__()
        kernel_size = 3
        padding = 1
        layers = []
        layers.append(nn.Conv2d(in_channels=channels, out_channels=features, kernel_size=kernel_size,
                                padding=padding, bias=False))
        layers.append(nn.ReLU(inplace=True))
        for _ in range(num_of_layers - 2):
            layers.append(nn.Conv2d(in_channels=features, out_channels=features, kernel_size=kernel_size,
                                    padding=padding, bias=False))
            layers.append(nn.BatchNorm2d(features))
            layers.append(nn.ReLU(inplace=True))
        layers.append(nn.Conv2d(in_channels=features, out_channels=channels, kernel_size=kernel_size,
                                padding=padding, bias=False))
        self.dncnn = nn.Sequential(*layers)

    def forward(self, x):
        out = self.dncnn(x)
        return out


class EquilibriumGrad(torch.nn.Module):
    def __init__(self, linear_operator, nonlinear_operator, eta, minval=-1, maxval=1):
        super(EquilibriumGrad, self).__init__()
        self.linear_op = linear_operator
        self.nonlinear_op = nonlinear_operator
        self.minval = minval
        self.maxval = maxval
        self.register_parameter(name='eta', param=torch.nn.Parameter(torch.tensor(eta), requires_grad=True))

    def _linear_op(self, x):
        return self.linear_op.forward(x)

    def _linear_adjoint(self, x):
        return self.linear_op.adjoint(x)

    def get_gradient(self, z, y):
        # data term A^T A z - A^T b, plus the residual the denoiser predicts (its noise estimate)
        return self.linear_op.gramian(z) - y + self.nonlinear_op(z)

    def forward(self, z, y):
        z_tplus1 = z - self.eta * self.get_gradient(z, y)
        z_tplus1 = torch.clamp(z_tplus1, self.minval, self.maxval)
        return z_tplus1


def forward_iteration(f, x0, max_iter=50, tol=1e-2):
    f0 = f(x0)
    res = []
    for k in range(max_iter):
        x = f0
        f0 = f(x)
        res.append((f0 - x).norm().item() / (1e-5 + f0.norm().item()))
        if res[-1] < tol:
            break
    return f0, res


class DEQFixedPoint(nn.Module):
    def __init__(self, f, solver, **kwargs):
        super().__init__()
        self.f = f
        self.solver = solver
        self.kwargs = kwargs

    def forward(self, x, initial_point=None):
        if initial_point is None:
            init_point = torch.zeros_like(x)
        else:
            init_point = initial_point
        # the fixed point without the tape, then one step that carries gradients (JFB)
        with torch.no_grad():
            z, self.forward_res = self.solver(lambda z: self.f(z, x), init_point, **self.kwargs)
        z = self.f(z, x)
        return z


def physics():
    from spade.physics import BlockCS
    return BlockCS.gaussian(0.25)


def call(model, y, physics):
    """The DEQ from SPADE's ``(y, physics)``: its input is ``A^T y``, started there too."""
    model.f.linear_op.physics = physics
    x = physics.A_adjoint(y)
    return model(x, initial_point=x)


def make(op, features: int = 16, layers: int = 5, max_iter: int = 12):
    denoiser = DnCNN(1, num_of_layers=layers, features=features)
    return DEQFixedPoint(EquilibriumGrad(PhysicsOperator(op), denoiser, eta=0.5), forward_iteration,
                         max_iter=max_iter, tol=1e-3)


def build():
    """``(model, example_inputs)``: the DEQ on its own input ``A^T b``."""
    from spade.data import example_pair
    torch.manual_seed(0)
    op = physics()
    _, y = example_pair(op, batch=2, side=66)
    x = op.A_adjoint(y)
    return make(op).eval(), (x, x)
