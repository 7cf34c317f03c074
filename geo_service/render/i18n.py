"""Interface strings of the map pages in English, French and Spanish, and the labels of the
campaign's kinds and commitment kinds (themes and sections carry their own names in the database)."""

from __future__ import annotations

from typing import Literal, get_args

# The languages of the service, listed here and nowhere else: pages, names, tiles, images, API.
Lang = Literal["en", "fr", "es"]
LANGS: tuple[Lang, ...] = get_args(Lang)

STRINGS: dict[str, dict[str, str]] = {
    "title": {"en": "Human rights cities and territories",
              "fr": "Villes et territoires des droits humains",
              "es": "Ciudades y territorios de derechos humanos"},
    "map_label": {"en": "Map of human rights cities and territories",
                  "fr": "Carte des villes et territoires des droits humains",
                  "es": "Mapa de las ciudades y territorios de derechos humanos"},
    "counter": {"en": "{n} of 1000 by 2030", "fr": "{n} sur 1000 d’ici 2030",
                "es": "{n} de 1000 para 2030"},
    "shown": {"en": "{n} shown", "fr": "{n} affichés", "es": "{n} mostrados"},
    "search": {"en": "Search by name", "fr": "Rechercher par nom", "es": "Buscar por nombre"},
    "no_match": {"en": "No territory matches", "fr": "Aucun territoire ne correspond",
                 "es": "Ningún territorio coincide"},
    "unavailable": {"en": "The members could not be loaded. Try again later.",
                    "fr": "Les membres n’ont pas pu être chargés. Réessayez plus tard.",
                    "es": "No se pudieron cargar los miembros. Inténtelo más tarde."},
    "filters": {"en": "Filters and list", "fr": "Filtres et liste", "es": "Filtros y lista"},
    "theme": {"en": "Rights theme", "fr": "Thème de droits", "es": "Tema de derechos"},
    "section": {"en": "UCLG section", "fr": "Section de CGLU", "es": "Sección de CGLU"},
    "kind": {"en": "Kind of government", "fr": "Type de collectivité", "es": "Tipo de gobierno"},
    "commitment_kind": {"en": "Commitment", "fr": "Engagement", "es": "Compromiso"},
    "all": {"en": "All", "fr": "Tous", "es": "Todos"},
    "reset": {"en": "Clear filters", "fr": "Effacer les filtres", "es": "Borrar filtros"},
    "legend": {"en": "Legend", "fr": "Légende", "es": "Leyenda"},
    "colour_by": {"en": "Colour: commitment", "fr": "Couleur : engagement",
                  "es": "Color: compromiso"},
    "shape_by": {"en": "Shape: kind of government", "fr": "Forme : type de collectivité",
                 "es": "Forma: tipo de gobierno"},
    "in_view": {"en": "Territories in view", "fr": "Territoires dans la vue",
                "es": "Territorios en la vista"},
    "country": {"en": "Country", "fr": "Pays", "es": "País"},
    "year": {"en": "Year", "fr": "Année", "es": "Año"},
    "themes": {"en": "Rights themes", "fr": "Thèmes de droits", "es": "Temas de derechos"},
    "initiatives": {"en": "Initiatives", "fr": "Initiatives", "es": "Iniciativas"},
    "sources": {"en": "Sources", "fr": "Sources", "es": "Fuentes"},
    "source": {"en": "source", "fr": "source", "es": "fuente"},
    "website": {"en": "Website", "fr": "Site web", "es": "Sitio web"},
    "confidence": {"en": "Confidence", "fr": "Fiabilité", "es": "Confianza"},
    "placed": {"en": "Placed", "fr": "Placé", "es": "Ubicado"},
    "boundary": {"en": "Boundary", "fr": "Contour", "es": "Límite"},
    "fullscreen": {"en": "Full screen", "fr": "Plein écran", "es": "Pantalla completa"},
    "exit_fullscreen": {"en": "Exit full screen", "fr": "Quitter le plein écran",
                        "es": "Salir de pantalla completa"},
    "language": {"en": "Language", "fr": "Langue", "es": "Idioma"},
    "caveat": {"en": "Documented public commitments, not the official campaign roster.",
               "fr": "Engagements publics documentés, pas la liste officielle de la campagne.",
               "es": "Compromisos públicos documentados, no la lista oficial de la campaña."},
    "cluster": {"en": "{n} territories: zoom in", "fr": "{n} territoires : zoomer",
                "es": "{n} territorios: acercar"},
    "high": {"en": "high", "fr": "élevée", "es": "alta"},
    "medium": {"en": "medium", "fr": "moyenne", "es": "media"},
    "low": {"en": "low", "fr": "faible", "es": "baja"},
    # time: the timeline on the maps, year= on the images
    "timeline": {"en": "Year", "fr": "Année", "es": "Año"},
    "all_years": {"en": "all years", "fr": "toutes les années", "es": "todos los años"},
    "by_year": {"en": "members by the end of {year}", "fr": "membres fin {year}",
                "es": "miembros a fines de {year}"},
    "play": {"en": "Play the years", "fr": "Faire défiler les années",
             "es": "Recorrer los años"},
    "pause": {"en": "Pause", "fr": "Pause", "es": "Pausa"},
    "milestones": {"en": "Milestones", "fr": "Étapes", "es": "Hitos"},
    "milestone": {"en": "{n} members: {year}", "fr": "{n} membres : {year}",
                  "es": "{n} miembros: {year}"},
    "not_yet": {"en": "not yet (goal: 2030)", "fr": "pas encore (objectif : 2030)",
                "es": "todavía no (meta: 2030)"},
    # the map's Download control
    "download": {"en": "Download", "fr": "Télécharger", "es": "Descargar"},
    "format": {"en": "Format", "fr": "Format", "es": "Formato"},
    "size": {"en": "Size", "fr": "Taille", "es": "Tamaño"},
    "download_as": {"en": "Download this view ({fmt})", "fr": "Télécharger cette vue ({fmt})",
                    "es": "Descargar esta vista ({fmt})"},
    # territory pages and the list of territories
    "territories": {"en": "Territories", "fr": "Territoires", "es": "Territorios"},
    "all_territories": {"en": "All territories", "fr": "Tous les territoires",
                        "es": "Todos los territorios"},
    "world_map": {"en": "World map", "fr": "Carte du monde", "es": "Mapa mundial"},
    "skip": {"en": "Skip to content", "fr": "Aller au contenu", "es": "Ir al contenido"},
    "local_name": {"en": "Local name", "fr": "Nom local", "es": "Nombre local"},
    "name": {"en": "Name", "fr": "Nom", "es": "Nombre"},
    "joined_on": {"en": "Joined on", "fr": "Adhésion le", "es": "Adhesión el"},
    "commitment_text": {"en": "What was committed", "fr": "Engagement pris",
                        "es": "Compromiso asumido"},
    "no_initiatives": {"en": "No initiative recorded yet.", "fr": "Aucune initiative enregistrée.",
                       "es": "Ninguna iniciativa registrada."},
    "no_boundary": {"en": "No boundary matched: shown by its point ({placed}).",
                    "fr": "Aucun contour associé : représenté par son point ({placed}).",
                    "es": "Ningún límite asociado: se muestra por su punto ({placed})."},
    "boundary_from": {"en": "{name} ({level}, {area}), from {source}.",
                      "fr": "{name} ({level}, {area}), d’après {source}.",
                      "es": "{name} ({level}, {area}), según {source}."},
    "embed": {"en": "Embed a map of this territory", "fr": "Intégrer une carte de ce territoire",
              "es": "Insertar un mapa de este territorio"},
    "embed_help": {"en": "Paste this code into a web page.",
                   "fr": "Collez ce code dans une page web.",
                   "es": "Pegue este código en una página web."},
    "data": {"en": "Data and images", "fr": "Données et images", "es": "Datos e imágenes"},
    "as_geojson": {"en": "This territory as GeoJSON", "fr": "Ce territoire en GeoJSON",
                   "es": "Este territorio en GeoJSON"},
    "map_image": {"en": "Map image ({fmt})", "fr": "Image de la carte ({fmt})",
                  "es": "Imagen del mapa ({fmt})"},
    "map_of": {"en": "Map of {name}", "fr": "Carte de {name}", "es": "Mapa de {name}"},
    "on_the_map": {"en": "See on the world map", "fr": "Voir sur la carte du monde",
                   "es": "Ver en el mapa mundial"},
    "filter": {"en": "Filter", "fr": "Filtrer", "es": "Filtrar"},
    "list_shown": {"en": "{n} of {total} territories", "fr": "{n} territoires sur {total}",
                   "es": "{n} de {total} territorios"},
    "sort_by": {"en": "Sort by {column}", "fr": "Trier par {column}",
                "es": "Ordenar por {column}"},
    "territory_of": {"en": "{kind} in {country}", "fr": "{kind} — {country}",
                     "es": "{kind} en {country}"},
    # the about page
    "about": {"en": "About this map and its sources", "fr": "À propos de cette carte et de ses sources",
              "es": "Acerca de este mapa y sus fuentes"},
    "about_intro": {
        "en": "This open map shows the local and regional governments of the human rights cities "
              "and territories movement, with where each commitment and boundary comes from.",
        "fr": "Cette carte ouverte montre les collectivités locales et régionales du mouvement des "
              "villes et territoires des droits humains, avec l’origine de chaque engagement et "
              "de chaque contour.",
        "es": "Este mapa abierto muestra los gobiernos locales y regionales del movimiento de "
              "ciudades y territorios de derechos humanos, con el origen de cada compromiso y de "
              "cada límite."},
    "boundary_sources": {"en": "Boundaries", "fr": "Contours", "es": "Límites"},
    "dataset": {"en": "Dataset", "fr": "Jeu de données", "es": "Conjunto de datos"},
    "level": {"en": "Level", "fr": "Niveau", "es": "Nivel"},
    "licence": {"en": "Licence", "fr": "Licence", "es": "Licencia"},
    "attribution": {"en": "Attribution", "fr": "Attribution", "es": "Atribución"},
    "version": {"en": "Version", "fr": "Version", "es": "Versión"},
    "members_data": {"en": "Members and initiatives", "fr": "Membres et initiatives",
                     "es": "Miembros e iniciativas"},
    "members_text": {
        "en": "Each member and initiative is a documented public commitment, kept with its "
              "sources (linked on its page) and a confidence level.",
        "fr": "Chaque membre et chaque initiative est un engagement public documenté, conservé "
              "avec ses sources (en lien sur sa page) et un niveau de fiabilité.",
        "es": "Cada miembro e iniciativa es un compromiso público documentado, conservado con sus "
              "fuentes (enlazadas en su página) y un nivel de confianza."},
    "software": {"en": "Software and fonts", "fr": "Logiciels et polices",
                 "es": "Software y tipografías"},
    "for_developers": {"en": "Data for developers", "fr": "Données pour les développeurs",
                       "es": "Datos para desarrolladores"},
    "matched": {"en": "on its boundary", "fr": "sur son contour", "es": "en su límite"},
    "point": {"en": "at a gazetteer point", "fr": "sur un point du répertoire",
              "es": "en un punto del nomenclátor"},
    "ambiguous": {"en": "on its country (name ambiguous)", "fr": "sur son pays (nom ambigu)",
                  "es": "en su país (nombre ambiguo)"},
    "unmatched": {"en": "on its country (not located)", "fr": "sur son pays (non localisé)",
                  "es": "en su país (no ubicado)"},
    "implausible": {"en": "at a gazetteer point (its boundary did not fit)",
                    "fr": "sur un point du répertoire (son contour ne convenait pas)",
                    "es": "en un punto del nomenclátor (su límite no encajaba)"},
}

KINDS: dict[str, dict[str, str]] = {
    "municipality": {"en": "Municipality", "fr": "Municipalité", "es": "Municipio"},
    "metropolitan-area": {"en": "Metropolitan area", "fr": "Aire métropolitaine",
                          "es": "Área metropolitana"},
    "region": {"en": "Region or province", "fr": "Région ou province", "es": "Región o provincia"},
    "association": {"en": "Association of local governments", "fr": "Association de collectivités",
                    "es": "Asociación de gobiernos locales"},
}

COMMITMENTS: dict[str, dict[str, str]] = {
    "campaign-signatory": {"en": "Campaign signatory", "fr": "Signataire de la campagne",
                           "es": "Firmante de la campaña"},
    "declared": {"en": "Declared human rights city", "fr": "Ville des droits humains déclarée",
                 "es": "Ciudad de derechos humanos declarada"},
    "charter": {"en": "Charter signatory", "fr": "Signataire d’une charte",
                "es": "Firmante de una carta"},
    "ordinance": {"en": "Human rights ordinance", "fr": "Ordonnance des droits humains",
                  "es": "Ordenanza de derechos humanos"},
    "grassroots-pdhre": {"en": "Grassroots (PDHRE)", "fr": "Initiative citoyenne (PDHRE)",
                         "es": "Iniciativa ciudadana (PDHRE)"},
    "other-commitment": {"en": "Other commitment", "fr": "Autre engagement",
                         "es": "Otro compromiso"},
}

# the years the timeline and `year=` take: from the first documented commitments to the goal
FIRST_YEAR, LAST_YEAR = 1990, 2030
MILESTONES = (10, 100, 1000)

# the map images' sizes, as the Download control offers them
PRESETS: dict[str, dict[str, str]] = {
    "slide-16x9": {"en": "Slide 16:9 (1920×1080)", "fr": "Diapositive 16:9 (1920×1080)",
                   "es": "Diapositiva 16:9 (1920×1080)"},
    "slide-4x3": {"en": "Slide 4:3 (1600×1200)", "fr": "Diapositive 4:3 (1600×1200)",
                  "es": "Diapositiva 4:3 (1600×1200)"},
    "slide-4k": {"en": "Slide 4K (3840×2160)", "fr": "Diapositive 4K (3840×2160)",
                 "es": "Diapositiva 4K (3840×2160)"},
    "a4-landscape": {"en": "A4 landscape, 300 dpi", "fr": "A4 paysage, 300 dpi",
                     "es": "A4 horizontal, 300 ppp"},
    "square": {"en": "Square (1080×1080)", "fr": "Carré (1080×1080)",
               "es": "Cuadrado (1080×1080)"},
    "social": {"en": "Social card (1200×630)", "fr": "Carte sociale (1200×630)",
               "es": "Tarjeta social (1200×630)"},
}

# the level of the boundary a territory is drawn with, as the popup names it
LEVELS: dict[str, dict[str, str]] = {
    "country": {"en": "country", "fr": "pays", "es": "país"},
    "region": {"en": "first-level region", "fr": "région de premier niveau",
               "es": "región de primer nivel"},
    "municipality": {"en": "municipality", "fr": "commune", "es": "municipio"},
}

# Okabe–Ito: told apart with the common colour-vision deficiencies; the legend repeats them as text
COLOURS = {
    "campaign-signatory": "#0072B2", "declared": "#E69F00", "charter": "#009E73",
    "ordinance": "#CC79A7", "grassroots-pdhre": "#56B4E9", "other-commitment": "#D55E00",
}
SHAPES = {"municipality": "circle", "metropolitan-area": "square", "region": "diamond",
          "association": "triangle"}


def strings(lang: str) -> dict[str, str]:
    return {key: values[lang] for key, values in STRINGS.items()}


def labels(table: dict[str, dict[str, str]], lang: str) -> dict[str, str]:
    return {key: values[lang] for key, values in table.items()}
