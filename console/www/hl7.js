// hl7.js — an HL7 v2 message shown segment by segment, with each field's position
// and name (HL7 v2.5.1 chapter 2, 3, 4, 7 field definitions) on hover and for screen
// readers. Field 1 of MSH is the field separator itself (v2.5.1 §2.5.4).

const NAMES = {
  MSH: ["Field Separator", "Encoding Characters", "Sending Application", "Sending Facility",
    "Receiving Application", "Receiving Facility", "Date/Time of Message", "Security", "Message Type",
    "Message Control ID", "Processing ID", "Version ID", "Sequence Number", "Continuation Pointer",
    "Accept Acknowledgment Type", "Application Acknowledgment Type", "Country Code", "Character Set",
    "Principal Language of Message", "Alternate Character Set Handling Scheme", "Message Profile Identifier"],
  EVN: ["Event Type Code", "Recorded Date/Time", "Date/Time Planned Event", "Event Reason Code",
    "Operator ID", "Event Occurred", "Event Facility"],
  PID: ["Set ID", "Patient ID", "Patient Identifier List", "Alternate Patient ID", "Patient Name",
    "Mother's Maiden Name", "Date/Time of Birth", "Administrative Sex", "Patient Alias", "Race",
    "Patient Address", "County Code", "Phone Number - Home", "Phone Number - Business",
    "Primary Language", "Marital Status", "Religion", "Patient Account Number", "SSN Number",
    "Driver's License Number", "Mother's Identifier", "Ethnic Group", "Birth Place",
    "Multiple Birth Indicator", "Birth Order", "Citizenship", "Veterans Military Status", "Nationality",
    "Patient Death Date and Time", "Patient Death Indicator"],
  PV1: ["Set ID", "Patient Class", "Assigned Patient Location", "Admission Type", "Preadmit Number",
    "Prior Patient Location", "Attending Doctor", "Referring Doctor", "Consulting Doctor",
    "Hospital Service", "Temporary Location", "Preadmit Test Indicator", "Re-admission Indicator",
    "Admit Source", "Ambulatory Status", "VIP Indicator", "Admitting Doctor", "Patient Type",
    "Visit Number", "Financial Class"],
  NK1: ["Set ID", "Name", "Relationship", "Address", "Phone Number", "Business Phone Number",
    "Contact Role"],
  ORC: ["Order Control", "Placer Order Number", "Filler Order Number", "Placer Group Number",
    "Order Status", "Response Flag", "Quantity/Timing", "Parent", "Date/Time of Transaction",
    "Entered By", "Verified By", "Ordering Provider"],
  OBR: ["Set ID", "Placer Order Number", "Filler Order Number", "Universal Service Identifier",
    "Priority", "Requested Date/Time", "Observation Date/Time", "Observation End Date/Time",
    "Collection Volume", "Collector Identifier", "Specimen Action Code", "Danger Code",
    "Relevant Clinical Information", "Specimen Received Date/Time", "Specimen Source",
    "Ordering Provider", "Order Callback Phone Number", "Placer Field 1", "Placer Field 2",
    "Filler Field 1", "Filler Field 2", "Results Rpt/Status Chng - Date/Time", "Charge to Practice",
    "Diagnostic Serv Sect ID", "Result Status"],
  OBX: ["Set ID", "Value Type", "Observation Identifier", "Observation Sub-ID", "Observation Value",
    "Units", "References Range", "Abnormal Flags", "Probability", "Nature of Abnormal Test",
    "Observation Result Status", "Effective Date of Reference Range", "User Defined Access Checks",
    "Date/Time of the Observation", "Producer's ID", "Responsible Observer", "Observation Method",
    "Equipment Instance Identifier", "Date/Time of the Analysis"],
  AL1: ["Set ID", "Allergen Type Code", "Allergen Code/Mnemonic/Description", "Allergy Severity Code",
    "Allergy Reaction Code", "Identification Date"],
  DG1: ["Set ID", "Diagnosis Coding Method", "Diagnosis Code", "Diagnosis Description",
    "Diagnosis Date/Time", "Diagnosis Type"],
  IN1: ["Set ID", "Insurance Plan ID", "Insurance Company ID", "Insurance Company Name",
    "Insurance Company Address"],
  MSA: ["Acknowledgment Code", "Message Control ID", "Text Message"],
  ERR: ["Error Code and Location", "Error Location", "HL7 Error Code", "Severity"],
  NTE: ["Set ID", "Source of Comment", "Comment", "Comment Type"],
  SPM: ["Set ID", "Specimen ID", "Specimen Parent IDs", "Specimen Type"],
  RXA: ["Give Sub-ID Counter", "Administration Sub-ID Counter", "Date/Time Start of Administration",
    "Date/Time End of Administration", "Administered Code", "Administered Amount", "Administered Units"],
  SCH: ["Placer Appointment ID", "Filler Appointment ID", "Occurrence Number", "Placer Group Number",
    "Schedule ID", "Event Reason", "Appointment Reason"],
  TXA: ["Set ID", "Document Type", "Document Content Presentation", "Activity Date/Time"],
};

export function fieldName(seg, n) {
  const names = NAMES[seg];
  return names && names[n - 1] ? names[n - 1] : "";
}

// Splits ER7 text into segments of fields: [{id, fields: [{n, value}]}].
export function parse(text) {
  const segs = [];
  for (const line of String(text).split(/\r\n|\r|\n/)) {
    if (!line) continue;
    const id = line.slice(0, 3);
    if (id === "MSH" || id === "FHS" || id === "BHS") {
      const sep = line.charAt(3) || "|";
      const rest = line.slice(4).split(sep);
      const fields = [{ n: 1, value: sep }];
      rest.forEach((v, i) => fields.push({ n: i + 2, value: v }));
      segs.push({ id, fields });
    } else {
      const parts = line.split("|");
      segs.push({ id, fields: parts.slice(1).map((v, i) => ({ n: i + 1, value: v })) });
    }
  }
  return segs;
}

export function looksLikeHl7(text) {
  return /^\s*(MSH|FHS|BHS)/.test(String(text || ""));
}
