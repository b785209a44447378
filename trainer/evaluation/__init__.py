"""Evaluation: retrieval R@K, zero-shot with prompt ensembles, linear probe, layer-wise modality NMI."""
from trainer.evaluation.evaluate import evaluate
from trainer.evaluation.features import encode_batched, evaluating
from trainer.evaluation.linear_probe import linear_probe
from trainer.evaluation.nmi import layerwise_nmi, modality_nmi
from trainer.evaluation.retrieval import recall_at_k, retrieval_recall
from trainer.evaluation.zeroshot import zero_shot_accuracy, zero_shot_classifier

__all__ = [
    "encode_batched",
    "evaluate",
    "evaluating",
    "layerwise_nmi",
    "linear_probe",
    "modality_nmi",
    "recall_at_k",
    "retrieval_recall",
    "zero_shot_accuracy",
    "zero_shot_classifier",
]
