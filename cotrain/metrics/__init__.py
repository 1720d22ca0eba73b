"""Task metrics: pure functions from model text and ground truth to numbers.

``answers`` (classification, VQA, yes/no, MCQ, counting), ``grounding`` (box IoU, Acc@k, mIoU),
``captioning`` (PTB tokenisation, BLEU, METEOR, ROUGE-L, CIDEr), ``retrieval`` (R@k). Nothing
here runs a model, reads files or knows about benchmarks; ``cotrain.eval`` wires metrics to tasks.
"""
