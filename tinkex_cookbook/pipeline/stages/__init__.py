"""Built-in pipeline stages, one module per recipe family.

They register themselves when imported; the stage registry imports each module
the first time a run asks for a stage it defines (``BUILTIN_STAGES``), so
a supervised run never imports the RL or DPO code.
"""
