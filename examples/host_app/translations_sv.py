"""Swedish for the platform's own strings (English is the source language)."""

from __future__ import annotations

SV: dict[str, str] = {
    "%(minutes)s min": "%(minutes)s min",
    "A client with this e-mail address already exists. Find them in the client list, or leave "
    "the address empty.": "Det finns redan en klient med den här e-postadressen. Sök upp "
    "klienten i klientlistan, eller lämna adressen tom.",
    "A confirmation was sent to %(email)s.": "En bekräftelse har skickats till %(email)s.",
    "Activate %(app)s": "Aktivera %(app)s",
    "Active": "Aktiv",
    "Add client": "Lägg till klient",
    "All clients": "Alla klienter",
    "App menu": "Appmeny",
    "Apps": "Appar",
    "Apps add features to your practice. Activate the ones you need; deactivating keeps their "
    "data.": "Appar ger din mottagning fler funktioner. Aktivera dem du behöver; om du "
    "inaktiverar en app finns dess data kvar.",
    "Apps may keep pseudonymous proof that they are required to keep (for example that consent "
    "was given, without the name or e-mail).": "Appar kan spara pseudonymiserade bevis som de "
    "måste behålla (till exempel att ett samtycke gavs, utan namn eller e-postadress).",
    "Ask the practice owner if you need access.": "Be mottagningens ägare om behörighet om du "
    "behöver den.",
    "Ask the practice owner to activate apps.": "Be mottagningens ägare att aktivera appar.",
    "Book": "Boka",
    "Book a time at %(practice)s": "Boka tid hos %(practice)s",
    "Book a time for the client": "Boka tid åt klienten",
    "Book a time with a practice near you": "Boka tid hos en mottagning nära dig",
    "Book another time": "Boka en till tid",
    "Book online": "Boka online",
    "Book your next visit with this link:": "Boka ditt nästa besök med den här länken:",
    "See, give or withdraw your consents:": "Se, ge eller återkalla dina samtycken:",
    "Booked": "Bokad",
    "Bookings": "Bokningar",
    "Cancel": "Avbryt",
    "Check the address, or start again from the start page.": "Kontrollera adressen, eller "
    "börja om från startsidan.",
    "Choose a service and one of the free times, then book again.": "Välj en tjänst och en av de "
    "lediga tiderna och boka sedan igen.",
    "Choose one of the free times in the list.": "Välj en av de lediga tiderna i listan.",
    "Choose the client's language.": "Välj klientens språk.",
    "Choose what you want to book.": "Välj vad du vill boka.",
    "Client since": "Klient sedan",
    "Clients": "Klienter",
    "Deactivate": "Inaktivera",
    "Demo accounts": "Demokonton",
    "Development mailbox": "Utvecklingsbrevlåda",
    "E-mail": "E-post",
    "E-mail cannot be delivered from here to an address with a letter other than a to z "
    "before the @ (such as ñ or å). Enter another address.": "E-post kan inte levereras "
    "härifrån till en adress med en annan bokstav än a till z före @ (till exempel ñ eller "
    "å). Ange en annan adress.",
    "Earlier": "Tidigare",
    "Enter an e-mail address like name@example.com, or leave it empty.": "Skriv en "
    "e-postadress som namn@example.com, eller lämna fältet tomt.",
    "Enter an e-mail address like name@example.com.": "Skriv en e-postadress som "
    "namn@example.com.",
    "Enter the client's name.": "Skriv klientens namn.",
    "Enter the name in at most 120 characters, on one line.": "Skriv namnet med högst 120 "
    "tecken, på en rad.",
    "Enter the phone number with digits only, or leave it empty.": "Skriv telefonnumret med "
    "bara siffror, eller lämna fältet tomt.",
    "Enter your name in at most 120 characters, on one line.": "Skriv ditt namn med högst 120 "
    "tecken, på en rad.",
    "Enter your name.": "Skriv ditt namn.",
    "Erase %(name)s?": "Radera %(name)s?",
    "Erase client": "Radera klient",
    "Erase client…": "Radera klient…",
    "Error:": "Fel:",
    "Filter": "Filtrera",
    "Find clients": "Hitta klienter",
    "For practitioners": "För behandlare",
    "From": "Från",
    "Go back and use the buttons on the page.": "Gå tillbaka och använd knapparna på sidan.",
    "Go back, reload the page and try again.": "Gå tillbaka, ladda om sidan och försök igen.",
    "Go to the start page": "Till startsidan",
    "Hello %(name)s,": "Hej %(name)s!",
    "In demo mode nothing leaves this computer: every e-mail the platform and its apps send is "
    "kept here.": "I demoläget lämnar ingenting den här datorn: all e-post som plattformen och "
    "dess appar skickar hamnar här.",
    "Language": "Språk",
    "Language for e-mails": "Språk för e-post",
    "Later": "Senare",
    "Main menu": "Huvudmeny",
    "Name": "Namn",
    "New client": "Ny klient",
    "Next": "Nästa",
    "No apps are installed on this platform.": "Inga appar är installerade på plattformen.",
    "No bookings in these two weeks.": "Inga bokningar de här två veckorna.",
    "No bookings yet.": "Inga bokningar ännu.",
    "No clients match.": "Inga klienter matchar.",
    "No e-mail was waiting.": "Ingen e-post väntade på att skickas.",
    "No e-mail yet.": "Ingen e-post ännu.",
    "No practices yet.": "Inga mottagningar ännu.",
    "Not active": "Inte aktiv",
    "Not you? Book as a new client": "Inte du? Boka som ny klient",
    "Nothing more was saved. Try again in a moment.": "Inget mer sparades. Försök igen om en "
    "liten stund.",
    "Nothing was saved. Reload the page and send the form again.": "Inget sparades. Ladda om "
    "sidan och skicka formuläret igen.",
    "Notes": "Anteckningar",
    "Online booking": "Onlinebokning",
    "Only the practice owner can activate or deactivate apps.": "Bara mottagningens ägare kan "
    "aktivera eller inaktivera appar.",
    "Open %(app)s": "Öppna %(app)s",
    "Page %(page)s of %(pages)s": "Sida %(page)s av %(pages)s",
    "Pages": "Sidor",
    "Password": "Lösenord",
    "Phone": "Telefon",
    "Please fix the following:": "Rätta till följande:",
    "Practice": "Mottagning",
    "Praktika is a small booking platform for therapists, physiotherapists and coaches. Pick a "
    "practice to book online.": "Praktika är en liten bokningsplattform för terapeuter, "
    "fysioterapeuter och coacher. Välj en mottagning för att boka online.",
    "Praktika is an example booking platform that shows how apps such as Samtycke are "
    "installed.": "Praktika är en exempelplattform som visar hur appar som Samtycke "
    "installeras.",
    "Previous": "Föregående",
    "Queued e-mail was sent: %(n)s.": "Köad e-post skickades: %(n)s.",
    "Recipient": "Mottagare",
    "Removes the client, their bookings and their personal data in every app.": "Tar bort "
    "klienten, hens bokningar och hens personuppgifter i alla appar.",
    "Search by name or e-mail": "Sök på namn eller e-post",
    "Send queued e-mail now": "Skicka köad e-post nu",
    "Sent": "Skickat",
    "Service": "Tjänst",
    "Show": "Visa",
    "Show clients": "Visa klienter",
    "Showing %(first)s–%(last)s of %(total)s clients": "Visar %(first)s–%(last)s av %(total)s "
    "klienter",
    "Shorten the text and try again.": "Korta texten och försök igen.",
    "Sign in": "Logga in",
    "Sign in to see your bookings and clients and to install apps from the app menu.": "Logga "
    "in för att se dina bokningar och klienter och installera appar från appmenyn.",
    "Sign out": "Logga ut",
    "Skip to content": "Hoppa till innehållet",
    "Someone else just booked that time. Choose another time.": "Någon annan bokade just den "
    "tiden. Välj en annan tid.",
    "Something went wrong on our side.": "Något gick fel hos oss.",
    "Status": "Status",
    "Subject": "Ämne",
    "Thank you, your time is booked": "Tack, din tid är bokad",
    "That filter is not available any more, so all clients are shown.": "Det filtret finns inte "
    "längre, så alla klienter visas.",
    "The app was deactivated. Its data is kept; activate it again to resume.": "Appen är "
    "inaktiverad. Dess data finns kvar; aktivera den igen för att fortsätta.",
    "The client and their bookings were erased.": "Klienten och hens bokningar är raderade.",
    "The client could not be erased, and nothing was changed. Try again in a moment.": "Klienten "
    "kunde inte raderas och inget ändrades. Försök igen om en liten stund.",
    "The client was added.": "Klienten är tillagd.",
    "The client, their bookings and the personal data every app holds about them are removed. "
    "This cannot be undone.": "Klienten, hens bokningar och de personuppgifter som varje app "
    "har om hen tas bort. Det går inte att ångra.",
    "The e-mail address or password is wrong. Check them and try again.": "E-postadressen eller "
    "lösenordet är fel. Kontrollera dem och försök igen.",
    "The form had expired.": "Formuläret hade gått ut.",
    "The page was not found.": "Sidan finns inte.",
    "The request could not be understood.": "Förfrågan gick inte att förstå.",
    "The time was booked.": "Tiden är bokad.",
    "There are no free times in the next two weeks.": "Det finns inga lediga tider de närmaste "
    "två veckorna.",
    "There are no free times in the next two weeks. Call the practice to book.": "Det finns inga "
    "lediga tider de närmaste två veckorna. Ring mottagningen för att boka.",
    "This page cannot be used like that.": "Sidan kan inte användas så.",
    "Tick the box to confirm that the client should be erased.": "Kryssa i rutan för att "
    "bekräfta att klienten ska raderas.",
    "The field “%(field)s” contains a line break, a control character (such as NUL) or "
    "characters that could not be read, which cannot be used there. Nothing was saved. Go "
    "back, correct the field and try again.": "Fältet ”%(field)s” innehåller en radbrytning, "
    "ett styrtecken (till exempel NUL) eller tecken som inte gick att läsa, och sådana kan "
    "inte användas där. Ingenting sparades. Gå tillbaka, rätta fältet och försök igen.",
    "Time": "Tid",
    "To": "Till",
    "To change or cancel, contact the practice: %(contact)s": "Kontakta mottagningen om du vill "
    "ändra eller avboka: %(contact)s",
    "Today": "I dag",
    "Too many wrong passwords: signing in is paused. Wait %(minutes)s minutes and try again, or "
    "ask the practice owner for help.": "För många felaktiga lösenord: inloggningen är pausad. "
    "Vänta %(minutes)s minuter och försök igen, eller be mottagningens ägare om hjälp.",
    "Version %(version)s": "Version %(version)s",
    "We could not save your booking, and nothing was booked. Please try again in a moment.": "Vi "
    "kunde inte spara din bokning, och inget bokades. Försök igen om en liten stund.",
    "We send the booking confirmation here.": "Hit skickar vi bokningsbekräftelsen.",
    "Weeks": "Veckor",
    "Welcome": "Välkommen",
    "What": "Vad",
    "What would you like to book?": "Vad vill du boka?",
    "What you sent is too large.": "Det du skickade är för stort.",
    "When": "När",
    "Where": "Var",
    "Yes, erase this client for good": "Ja, radera klienten för gott",
    "You are booking as %(name)s.": "Du bokar som %(name)s.",
    "You are not allowed to do this.": "Du har inte behörighet att göra det här.",
    "Your booking at %(practice)s": "Din bokning hos %(practice)s",
    "Your booking is confirmed:": "Din bokning är bekräftad:",
    "Your details": "Dina uppgifter",
    "booked online": "bokad online",
    "not given": "inte angivet",
    "optional": "frivilligt",
    "Reminder: your booking at %(practice)s tomorrow": "Påminnelse: din bokning hos "
    "%(practice)s i morgon",
    "A reminder of your booking tomorrow:": "En påminnelse om din bokning i morgon:",
    "Reminders sent: %(sent)s. Not reminded: %(left)s.": "Skickade påminnelser: %(sent)s. "
    "Inte påminda: %(left)s.",
    "Reminders for tomorrow": "Påminnelser inför i morgon",
    "Clients get an e-mail reminder the day before their booking, if they may be contacted.":
    "Klienterna får en påminnelse per e-post dagen före sin bokning, om de får kontaktas.",
    "will be reminded": "får en påminnelse",
    "reminded": "påmind",
    "no e-mail address": "ingen e-postadress",
    "May not be contacted": "Får inte kontaktas",
    "Send reminders now": "Skicka påminnelser nu",
    "No bookings tomorrow.": "Inga bokningar i morgon.",
    "“May not be contacted”: the client has no valid consent to reminders, so the practice "
    "sends them none.": "”Får inte kontaktas”: klienten har inget giltigt samtycke till "
    "påminnelser, så mottagningen skickar inga påminnelser till klienten.",
}
