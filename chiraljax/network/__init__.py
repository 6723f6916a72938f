"""What a user describes: the Network (emitters, ports, links, scatterers, couplings, photon
inputs and output modes), pulses, network files, and photon modes read from measurements.
"""
