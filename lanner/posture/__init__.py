"""Pod security posture: Pod Security Standards and hardening checks for Kubernetes manifests
(``lanner scan``) and at admission (``lanner admission``).

Modules are split by job: :mod:`.loader` reads manifests with line numbers, :mod:`.workloads`
finds the pod templates, :mod:`.pss` and :mod:`.extras` check them, :mod:`.scan` ties these
together, :mod:`.report`, :mod:`.sarif` and :mod:`.junit` write results, :mod:`.fix` rewrites
manifests, :mod:`.admission` serves the webhook. Nothing heavy is imported here.
"""
