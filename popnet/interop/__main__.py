"""`python -m popnet.interop export|import ...`"""
import sys

from popnet.interop.cli import main

sys.exit(main())
