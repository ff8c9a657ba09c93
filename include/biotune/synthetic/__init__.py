"""Synthetic generators that write each family's real file formats with a planted signal.

``biotune.synthetic.nhanes`` writes NHANES 2013-14 SAS XPORT files (PAXHD_H, PAXDAY_H,
PAXMIN_H, DPQ_H, RXQ_RX_H, RXQ_DRUG, DEMO_H) laid out as in the public codebooks.
"""
