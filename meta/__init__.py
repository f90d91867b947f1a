"""meta: meta-classifiers that read a popnet zoo and predict how each network was trained."""
