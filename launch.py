"""Start the Prompt Studio web app (also the Hugging Face Space entry): see studio/app.py."""

import sys

from studio.app import main

if __name__ == "__main__":
    sys.exit(main())
