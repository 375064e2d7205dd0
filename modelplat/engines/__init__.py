"""The engines that consume modelplat's output, run locally: Flux's controllers, KServe's
controller and webhooks, kube-controller-manager, and Istio's config generation.

Used by the tests and by `modelplat lint --engines`; everything listens on loopback only and is
always stopped. Nothing here renders: it is handed a rendered tree and reports what the engines did.
"""
