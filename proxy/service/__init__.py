"""Between HTTP and jobs: submitting an image job (authorise, bind, admit, run, finish) and the
gateway's wiring.
"""
