"""The Apple Health export format: what the Health app writes, for the generator and the importer.

``Export All Health Data`` in the Health app produces ``export.zip``::

    apple_health_export/export.xml        the records: an XML declaration, an internal DTD
                                          (``<!DOCTYPE HealthData [...]>``), then
                                          <HealthData locale=..> <ExportDate/> <Me/> Record* ...
    apple_health_export/export_cda.xml    the same data as an HL7 CDA document
    apple_health_export/workout-routes/   one GPX file per recorded route

A record is one line (children such as MetadataEntry on the following lines)::

    <Record type="HKQuantityTypeIdentifierStepCount" sourceName="Ana’s iPhone" sourceVersion="16.1"
     device="&lt;&lt;HKDevice: 0x2838f1e00&gt;, name:iPhone, ...&gt;" unit="count"
     creationDate="2022-11-06 08:20:11 -0800" startDate="2022-11-06 08:02:11 -0800"
     endDate="2022-11-06 08:11:45 -0800" value="512"/>

Dates are local wall-clock time with that record's own UTC offset ("YYYY-MM-DD HH:MM:SS +HHMM").
Sleep analysis values by iOS era: before iOS 16 InBed / Asleep / Awake; from iOS 16 InBed,
AsleepUnspecified, Awake, AsleepCore, AsleepDeep, AsleepREM.
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

EXPORT_DIR = "apple_health_export"
EXPORT_XML = f"{EXPORT_DIR}/export.xml"
EXPORT_CDA = f"{EXPORT_DIR}/export_cda.xml"
ROUTES_DIR = f"{EXPORT_DIR}/workout-routes"

SLEEP_TYPE = "HKCategoryTypeIdentifierSleepAnalysis"
STEPS_TYPE = "HKQuantityTypeIdentifierStepCount"
HR_TYPE = "HKQuantityTypeIdentifierHeartRate"

# HKCategoryValueSleepAnalysis raw values (HealthKit's enum): 0 inBed, 1 asleep (iOS < 16) /
# asleepUnspecified (iOS 16+), 2 awake, 3 asleepCore, 4 asleepDeep, 5 asleepREM.
SLEEP_VALUES: dict[str, int] = {
    "HKCategoryValueSleepAnalysisInBed": 0,
    "HKCategoryValueSleepAnalysisAsleep": 1,
    "HKCategoryValueSleepAnalysisAsleepUnspecified": 1,
    "HKCategoryValueSleepAnalysisAwake": 2,
    "HKCategoryValueSleepAnalysisAsleepCore": 3,
    "HKCategoryValueSleepAnalysisAsleepDeep": 4,
    "HKCategoryValueSleepAnalysisAsleepREM": 5,
}
IN_BED, AWAKE = 0, 2
ASLEEP_CODES = (1, 3, 4, 5)

# The internal DTD the Health app writes at the top of export.xml (HealthKit Export Version 14).
DTD = """<!DOCTYPE HealthData [
<!-- HealthKit Export Version: 14 -->
<!ELEMENT HealthData (ExportDate,Me,(Record|Correlation|Workout|ActivitySummary|ClinicalRecord|Audiogram|VisionPrescription)*)>
<!ATTLIST HealthData
  locale CDATA #REQUIRED
>
<!ELEMENT ExportDate EMPTY>
<!ATTLIST ExportDate
  value CDATA #REQUIRED
>
<!ELEMENT Me EMPTY>
<!ATTLIST Me
  HKCharacteristicTypeIdentifierDateOfBirth                   CDATA #REQUIRED
  HKCharacteristicTypeIdentifierBiologicalSex                 CDATA #REQUIRED
  HKCharacteristicTypeIdentifierBloodType                     CDATA #REQUIRED
  HKCharacteristicTypeIdentifierFitzpatrickSkinType           CDATA #REQUIRED
  HKCharacteristicTypeIdentifierCardioFitnessMedicationsUse   CDATA #REQUIRED
>
<!ELEMENT Record ((MetadataEntry|HeartRateVariabilityMetadataList)*)>
<!ATTLIST Record
  type          CDATA #REQUIRED
  unit          CDATA #IMPLIED
  value         CDATA #IMPLIED
  sourceName    CDATA #REQUIRED
  sourceVersion CDATA #IMPLIED
  device        CDATA #IMPLIED
  creationDate  CDATA #IMPLIED
  startDate     CDATA #REQUIRED
  endDate       CDATA #REQUIRED
>
<!-- Note: Any Records that appear as children of a correlation also appear as top-level records in this document. -->
<!ELEMENT Correlation ((MetadataEntry|Record)*)>
<!ATTLIST Correlation
  type          CDATA #REQUIRED
  sourceName    CDATA #REQUIRED
  sourceVersion CDATA #IMPLIED
  device        CDATA #IMPLIED
  creationDate  CDATA #IMPLIED
  startDate     CDATA #REQUIRED
  endDate       CDATA #REQUIRED
>
<!ELEMENT Workout ((MetadataEntry|WorkoutEvent|WorkoutRoute|WorkoutStatistics)*)>
<!ATTLIST Workout
  workoutActivityType   CDATA #REQUIRED
  duration              CDATA #IMPLIED
  durationUnit          CDATA #IMPLIED
  totalDistance         CDATA #IMPLIED
  totalDistanceUnit     CDATA #IMPLIED
  totalEnergyBurned     CDATA #IMPLIED
  totalEnergyBurnedUnit CDATA #IMPLIED
  sourceName            CDATA #REQUIRED
  sourceVersion         CDATA #IMPLIED
  device                CDATA #IMPLIED
  creationDate          CDATA #IMPLIED
  startDate             CDATA #REQUIRED
  endDate               CDATA #REQUIRED
>
<!ELEMENT WorkoutEvent ((MetadataEntry)*)>
<!ATTLIST WorkoutEvent
  type         CDATA #REQUIRED
  date         CDATA #REQUIRED
  duration     CDATA #IMPLIED
  durationUnit CDATA #IMPLIED
>
<!ELEMENT WorkoutStatistics EMPTY>
<!ATTLIST WorkoutStatistics
  type       CDATA #REQUIRED
  startDate  CDATA #REQUIRED
  endDate    CDATA #REQUIRED
  average    CDATA #IMPLIED
  minimum    CDATA #IMPLIED
  maximum    CDATA #IMPLIED
  sum        CDATA #IMPLIED
  unit       CDATA #IMPLIED
>
<!ELEMENT WorkoutRoute ((MetadataEntry|FileReference)*)>
<!ATTLIST WorkoutRoute
  sourceName    CDATA #REQUIRED
  sourceVersion CDATA #IMPLIED
  device        CDATA #IMPLIED
  creationDate  CDATA #IMPLIED
  startDate     CDATA #REQUIRED
  endDate       CDATA #REQUIRED
>
<!ELEMENT FileReference EMPTY>
<!ATTLIST FileReference
  path CDATA #REQUIRED
>
<!ELEMENT ActivitySummary EMPTY>
<!ATTLIST ActivitySummary
  dateComponents           CDATA #IMPLIED
  activeEnergyBurned       CDATA #IMPLIED
  activeEnergyBurnedGoal   CDATA #IMPLIED
  activeEnergyBurnedUnit   CDATA #IMPLIED
  appleMoveTime            CDATA #IMPLIED
  appleMoveTimeGoal        CDATA #IMPLIED
  appleExerciseTime        CDATA #IMPLIED
  appleExerciseTimeGoal    CDATA #IMPLIED
  appleStandHours          CDATA #IMPLIED
  appleStandHoursGoal      CDATA #IMPLIED
>
<!ELEMENT MetadataEntry EMPTY>
<!ATTLIST MetadataEntry
  key   CDATA #REQUIRED
  value CDATA #REQUIRED
>
<!-- Note: Heart Rate Variability records captured by Apple Watch may include an associated list of instantaneous beats-per-minute readings. -->
<!ELEMENT HeartRateVariabilityMetadataList (InstantaneousBeatsPerMinute*)>
<!ELEMENT InstantaneousBeatsPerMinute EMPTY>
<!ATTLIST InstantaneousBeatsPerMinute
  bpm  CDATA #REQUIRED
  time CDATA #REQUIRED
>
<!ELEMENT ClinicalRecord EMPTY>
<!ATTLIST ClinicalRecord
  type              CDATA #REQUIRED
  identifier        CDATA #REQUIRED
  sourceName        CDATA #REQUIRED
  sourceURL         CDATA #REQUIRED
  fhirVersion       CDATA #REQUIRED
  receivedDate      CDATA #REQUIRED
  resourceFilePath  CDATA #REQUIRED
>
<!ELEMENT Audiogram ((MetadataEntry|SensitivityPoint)*)>
<!ATTLIST Audiogram
  type          CDATA #REQUIRED
  sourceName    CDATA #REQUIRED
  sourceVersion CDATA #IMPLIED
  device        CDATA #IMPLIED
  creationDate  CDATA #IMPLIED
  startDate     CDATA #REQUIRED
  endDate       CDATA #REQUIRED
>
<!ELEMENT SensitivityPoint EMPTY>
<!ATTLIST SensitivityPoint
  frequencyValue   CDATA #REQUIRED
  frequencyUnit    CDATA #REQUIRED
  leftEarValue     CDATA #IMPLIED
  leftEarUnit      CDATA #IMPLIED
  rightEarValue    CDATA #IMPLIED
  rightEarUnit     CDATA #IMPLIED
>
<!ELEMENT VisionPrescription EMPTY>
<!ATTLIST VisionPrescription
  type             CDATA #REQUIRED
  dateIssued       CDATA #REQUIRED
  expirationDate   CDATA #IMPLIED
  brand            CDATA #IMPLIED
>
]>
"""


def header(locale: str, export_date: str, birth_date: str, sex: str) -> str:
    """Everything before the first record: XML declaration, DTD, <HealthData>, ExportDate, Me."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n' + DTD
        + f"<HealthData locale={quoteattr(locale)}>\n"
        + f" <ExportDate value={quoteattr(export_date)}/>\n"
        + f" <Me HKCharacteristicTypeIdentifierDateOfBirth={quoteattr(birth_date)}"
        + f" HKCharacteristicTypeIdentifierBiologicalSex={quoteattr(sex)}"
        + ' HKCharacteristicTypeIdentifierBloodType="HKBloodTypeNotSet"'
        + ' HKCharacteristicTypeIdentifierFitzpatrickSkinType="HKFitzpatrickSkinTypeNotSet"'
        + ' HKCharacteristicTypeIdentifierCardioFitnessMedicationsUse="None"/>\n'
    )


FOOTER = "</HealthData>\n"


def device_attr(name: str, model: str, hardware: str, software: str, address: int) -> str:
    """The HKDevice description Apple writes into ``device`` (escaped by quoteattr)."""
    return (f"<<HKDevice: 0x{address:09x}>, name:{name}, manufacturer:Apple Inc., model:{model}, "
            f"hardware:{hardware}, software:{software}>")


def record_open(rtype: str, source: str, version: str, device: str | None, unit: str | None,
                created: str, start: str, end: str, value: str | None) -> str:
    """``<Record ...`` with the attributes in the Health app's order (no closing)."""
    parts = [f' <Record type="{rtype}" sourceName={quoteattr(source)} sourceVersion={quoteattr(version)}']
    if device is not None:
        parts.append(f" device={quoteattr(device)}")
    if unit is not None:
        parts.append(f' unit="{unit}"')
    parts.append(f' creationDate="{created}" startDate="{start}" endDate="{end}"')
    if value is not None:
        parts.append(f' value="{value}"')
    return "".join(parts)


def cda_document(person_name: str, birth_date: str, observations: list[tuple[str, str, str, str, str]]) -> str:
    """A small HL7 CDA R2 document like export_cda.xml: (code display, value, unit, start, end)."""
    entries = []
    for display, value, unit, start, end in observations:
        entries.append(
            "<entry><organizer classCode=\"CLUSTER\" moodCode=\"EVN\"><component><observation classCode=\"OBS\" "
            "moodCode=\"EVN\"><templateId root=\"2.16.840.1.113883.10.20.22.4.27\"/>"
            f"<code codeSystem=\"2.16.840.1.113883.6.1\" codeSystemName=\"LOINC\" displayName={quoteattr(display)}/>"
            f"<effectiveTime><low value=\"{start}\"/><high value=\"{end}\"/></effectiveTime>"
            f"<value xsi:type=\"PQ\" value=\"{value}\" unit={quoteattr(unit)}/></observation></component>"
            "</organizer></entry>")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xsi:schemaLocation="urn:hl7-org:v3 ../../../CDA%20R2/cda-schemas-and-samples/infrastructure/cda/CDA.xsd" '
        'xmlns:cda="urn:hl7-org:v3" xmlns:sdtc="urn:hl7-org:sdtc" xmlns:fhir="http://hl7.org/fhir/v3" '
        'xmlns:fhirext="http://hl7.org/fhir/v3/ext">\n'
        ' <realmCode code="US"/>\n <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>\n'
        ' <templateId root="2.16.840.1.113883.10.20.22.1.2"/>\n <id extension="Health Export" '
        'root="1.1.1.1.1.1.1.1.1"/>\n <code codeSystem="2.16.840.1.113883.6.1" codeSystemName="LOINC" '
        'code="34109-9" displayName="Note"/>\n <title>Health Data Export</title>\n'
        f' <recordTarget><patientRole><patient><name>{person_name}</name>'
        f'<birthTime value="{birth_date.replace("-", "")}"/></patient></patientRole></recordTarget>\n'
        ' <component><structuredBody><component><section><title>Vital Signs</title>\n  '
        + "\n  ".join(entries)
        + "\n </section></component></structuredBody></component>\n</ClinicalDocument>\n")


def gpx_route(points: list[tuple[float, float, float, str]]) -> str:
    """A workout route as Apple writes it: GPX 1.1 with ele/time and speed/course extensions."""
    pts = "\n".join(
        f'   <trkpt lon="{lon:.6f}" lat="{lat:.6f}"><ele>{ele:.2f}</ele><time>{t}</time>'
        f"<extensions><speed>2.41</speed><course>87.3</course><hAcc>4.2</hAcc><vAcc>3.1</vAcc></extensions></trkpt>"
        for lat, lon, ele, t in points)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<gpx version="1.1" creator="Apple Health Export" '
            'xmlns="http://www.topografix.com/GPX/1/1" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            'xsi:schemaLocation="http://www.topografix.com/GPX/1/1 http://www.topografix.com/GPX/1/1/gpx.xsd">\n'
            f" <metadata><time>{points[0][3] if points else ''}</time></metadata>\n <trk><name>Route</name><trkseg>\n"
            f"{pts}\n </trkseg></trk>\n</gpx>\n")
