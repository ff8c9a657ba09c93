"""The file formats the EEG family reads and writes (constants only, shared by reader and generator).

Mind Monitor CSV (the Muse app researchers use; one file per recording, named
``mindMonitor_YYYY-MM-DD--HH-MM-SS.csv``), one row per raw EEG sample in "constant" recording:

    TimeStamp                         local time 'YYYY-MM-DD HH:MM:SS.fff', the phone's arrival time
    Delta_TP9 .. Gamma_TP10 (20)      absolute band power per band x channel, log10 (Bels), 10 Hz,
                                      repeated on the rows between updates
    RAW_TP9 RAW_AF7 RAW_AF8 RAW_TP10  raw EEG in microvolts, 0 .. 1682.815 (mid-scale ~ 841)
    AUX_RIGHT [AUX_LEFT]              the auxiliary electrode(s) (AUX_LEFT in newer app versions)
    [Mellow, Concentration]           in old versions and when enabled in the app
    Accelerometer_X/Y/Z (g), Gyro_X/Y/Z (deg/s)
    HeadBandOn (1/0), HSI_TP9 .. HSI_TP10 (horseshoe fit: 1 good, 2 medium, 4 bad), Battery (%)
    Elements                          events on rows of their own (every other cell empty):
                                      '/muse/event/connected Muse-XXXX', '/muse/elements/blink',
                                      '/muse/elements/jaw_clench', '/Marker/1' ...

Samples reach the phone in Bluetooth packets of 12, so timestamps come in bursts a few ms
apart with ~47 ms between packets: the sampling rate must be measured over the recording, not
from neighbouring rows. A lost packet is a missing run of 12 rows.

Plain CSV (muse-lsl's ``record`` layout, ``EEG_recording_YYYY-MM-DD-HH.MM.SS.csv``):
``timestamps,TP9,AF7,AF8,TP10,Right AUX`` with Unix-epoch seconds and microvolts centred on 0.
"""

from __future__ import annotations

FS = 256.0  # the Muse's EEG sampling rate (Hz)
CHANNELS = ("TP9", "AF7", "AF8", "TP10")
BANDS = ("Delta", "Theta", "Alpha", "Beta", "Gamma")
BAND_EDGES = {"Delta": (1.0, 4.0), "Theta": (4.0, 8.0), "Alpha": (7.5, 13.0), "Beta": (13.0, 30.0),
              "Gamma": (30.0, 44.0)}
RAW_MAX = 1682.815  # Muse ADC full scale in microvolts
PACKET = 12  # samples per Bluetooth EEG packet

BAND_COLUMNS = tuple(f"{b}_{c}" for b in BANDS for c in CHANNELS)
RAW_COLUMNS = tuple(f"RAW_{c}" for c in CHANNELS)
MOTION_COLUMNS = ("Accelerometer_X", "Accelerometer_Y", "Accelerometer_Z", "Gyro_X", "Gyro_Y", "Gyro_Z")
HSI_COLUMNS = tuple(f"HSI_{c}" for c in CHANNELS)
MIND_MONITOR_COLUMNS = ("TimeStamp", *BAND_COLUMNS, *RAW_COLUMNS, "AUX_RIGHT", *MOTION_COLUMNS, "HeadBandOn",
                        *HSI_COLUMNS, "Battery", "Elements")
MIND_MONITOR_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"  # written with milliseconds
MIND_MONITOR_FILE = "mindMonitor_{:%Y-%m-%d--%H-%M-%S}.csv"

PLAIN_COLUMNS = ("timestamps", *CHANNELS, "Right AUX")
PLAIN_FILE = "EEG_recording_{:%Y-%m-%d-%H.%M.%S}.csv"

BLINK = "/muse/elements/blink"
JAW_CLENCH = "/muse/elements/jaw_clench"
