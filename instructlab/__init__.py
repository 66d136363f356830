"""instructlab: a notebook-first research kit for instruction tuning.

One module per concept: ``formats`` (Alpaca / ShareGPT / chat messages), ``masking``
(response-only labels for any chat template), ``models`` (embedded offline models, device and
precision), ``train`` (LoRA through TRL + PEFT), ``build`` and ``kestrel`` (data building),
``generate``, ``metrics`` and ``judge`` (evaluation), ``ablation``, ``plots``, ``widgets`` and
``runs`` (run folders and manifests).
"""

__version__ = "0.1.0"
