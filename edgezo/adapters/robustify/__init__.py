"""Black-box robustification: ZO-AE-DS with randomized-smoothing certification.

Zhang et al., "How to Robustify Black-Box ML Models? A Zeroth-Order
Optimization Perspective", ICLR 2022 (arXiv:2203.14195); denoised smoothing of
Salman et al. (NeurIPS 2020); certification of Cohen et al. (ICML 2019).

* :mod:`.blackbox` — query-only classifiers: a callable, a torch module, an ONNX model.
* :mod:`.latent_oracle` — the Oracle over latent codes that RGE/CGE estimate in.
* :mod:`.certify` — CERTIFY / PREDICT and certified accuracy per radius.
* :mod:`.pipeline` — the stages (AE pre-training, denoiser warm start, ZO or FO
  stability training, certification, ONNX export) with checkpoints and resume.

Engine side: no HTTP here; the HTTP black-box client and the job service live in
``edgezo.host.service``.
"""

from .blackbox import BlackBox, BlackBoxError, CallableBlackBox, OnnxBlackBox, QueryBudgetExceeded, TorchBlackBox
from .certify import ABSTAIN, Certificate, certified_accuracy, certify, lower_confidence_bound, predict
from .config import ESTIMATORS, METHODS, RobustifyConfig
from .frontend import Frontend
from .latent_oracle import LatentOracle
from .pipeline import STAGES, Interrupted, Robustifier, load_report

__all__ = ["BlackBox", "BlackBoxError", "CallableBlackBox", "OnnxBlackBox", "QueryBudgetExceeded", "TorchBlackBox",
           "ABSTAIN", "Certificate", "certified_accuracy", "certify", "lower_confidence_bound", "predict",
           "ESTIMATORS", "METHODS", "RobustifyConfig", "Frontend", "LatentOracle", "STAGES", "Interrupted",
           "Robustifier", "load_report"]
