"""The monthly provincial clearing run: reconcile, net, post, pay."""
