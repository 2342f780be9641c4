"""Mizzen: a service mesh that runs the Istio API with a Python control plane and Envoy."""
